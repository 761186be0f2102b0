"""Stage 1, fetch: read the sources in params.yaml (local paths or s3:// URLs) into the canonical corpus.

    python -m stages.fetch

Reads fetch.sources (UTF-8, or UTF-16/32 with a byte-order mark). Writes data/raw/corpus.jsonl
({"id", "source", "texts": {FLORES-200 code: text}}), data/raw/manifest.json (origin, sha256 and rows in/kept/quarantined per input) and
data/raw/quarantine.jsonl (one line per rejected row, naming its file, line and field). Every output
appears atomically. A fetch that rejects more than fetch.max_quarantine_fraction leaves the previous
corpus in place and writes its report into data/raw/failed/.
"""

from __future__ import annotations

import logging

from bayling.config.fetch import FetchParams
from bayling.config.tracking import TrackingParams
from bayling.core.quarantine import Quarantined
from stages._common import project_root, run_stage, track_stage

ROOT = project_root()  # read each time the stage runs (see stages/_common.py)

log = logging.getLogger("fetch")
OUT = ROOT / "data" / "raw"
SHOW_QUARANTINED = 5


def main(fetch: FetchParams, tracking: TrackingParams) -> None:
    from bayling.fetch.publish import publish
    from bayling.fetch.run import build_corpus

    quarantined = 0

    def show(record: Quarantined) -> None:
        nonlocal quarantined
        if quarantined < SHOW_QUARANTINED:
            log.warning("quarantined %s", record.describe())
        quarantined += 1

    manifest = build_corpus(fetch, ROOT, OUT, show)
    sources = {i["name"]: {k: i[k] for k in ("rows_in", "rows_kept", "rows_quarantined")} for i in manifest["inputs"]}
    try:
        publish(OUT, manifest, fetch.max_quarantine_fraction)
    finally:
        if quarantined > SHOW_QUARANTINED:
            # only publish knows where the rows went: beside the corpus, or into failed/ when it refused them
            listed = OUT / "failed" / "quarantine.jsonl"
            if not listed.exists():
                listed = OUT / "quarantine.jsonl"
            log.warning("%d more quarantined rows are listed in %s", quarantined - SHOW_QUARANTINED, listed.relative_to(ROOT).as_posix())
        report = OUT / "manifest.json" if (OUT / "manifest.json").exists() else OUT / "failed" / "manifest.json"
        track_stage("fetch", tracking.experiment, fetch.model_dump(mode="json"), {"rows": manifest["totals"], "sources": sources}, [report])


if __name__ == "__main__":
    run_stage("fetch", ["fetch", "tracking"], main)
