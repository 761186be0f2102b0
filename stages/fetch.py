"""Stage 1, fetch: read the sources in params.yaml (local paths or s3:// URLs) into the canonical corpus.

    python -m stages.fetch

Writes data/raw/corpus.jsonl ({"id", "source", "texts": {FLORES-200 code: text}}), data/raw/manifest.json
(origin, sha256 and rows in/kept/quarantined per input) and data/raw/quarantine.jsonl (one line per
rejected row, naming its file, line and field). Every output appears atomically.
"""

from __future__ import annotations

import json
import logging
from contextlib import ExitStack

from bayling.corpus import CorpusBuilder, CorpusRow, parse_source
from bayling.errors import PipelineError
from bayling.params import FetchParams, TrackingParams
from bayling.storage import atomic_writer, materialize, sha256_of
from stages._common import ROOT, run_stage, track_stage, write_json

log = logging.getLogger("fetch")
OUT = ROOT / "data" / "raw"
SHOW_QUARANTINED = 5


def main(fetch: FetchParams, tracking: TrackingParams) -> None:
    builder = CorpusBuilder(dedupe=fetch.dedupe)
    inputs = []
    shown = 0
    with atomic_writer(OUT / "corpus.jsonl") as corpus, atomic_writer(OUT / "quarantine.jsonl") as quarantine:
        for source in fetch.sources:
            keyed = source.files if source.files else {"file": source.uri}
            with ExitStack() as stack:
                paths, infos = {}, []
                for key, uri in keyed.items():
                    path, info = stack.enter_context(materialize(uri, root=ROOT, s3_endpoint_url=fetch.s3_endpoint_url))
                    expected = source.sha256.get(uri)
                    if expected and expected != info.sha256:
                        raise PipelineError(f"{uri}: sha256 is {info.sha256}, but params.yaml expects {expected}")
                    paths[key] = path
                    infos.append(info)
                for record in parse_source(
                    source.name, source.format, paths, dict(keyed),
                    columns=source.columns, required=source.languages, max_rows=source.max_rows,
                ):
                    record = builder.admit(record)
                    if isinstance(record, CorpusRow):
                        corpus.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
                    else:
                        quarantine.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
                        if shown < SHOW_QUARANTINED:
                            log.warning("quarantined %s", record.describe())
                            shown += 1
            stats = builder.stats.get(source.name, {})
            inputs.append({
                "name": source.name,
                "format": source.format,
                "files": [vars(info) for info in infos],
                "rows_in": stats.get("rows_in", 0),
                "rows_kept": stats.get("rows_kept", 0),
                "rows_quarantined": stats.get("rows_quarantined", 0),
                "quarantine_reasons": {k.removeprefix("reason:"): v for k, v in sorted(stats.items()) if k.startswith("reason:")},
            })
            log.info("%s: %d rows in, %d kept, %d quarantined", source.name, inputs[-1]["rows_in"], inputs[-1]["rows_kept"], inputs[-1]["rows_quarantined"])
    totals = {k: sum(i[k] for i in inputs) for k in ("rows_in", "rows_kept", "rows_quarantined")}
    manifest = {
        "inputs": inputs,
        "totals": totals,
        "corpus": {"path": "data/raw/corpus.jsonl", "sha256": sha256_of(OUT / "corpus.jsonl"), "rows": totals["rows_kept"]},
        "quarantine": {"path": "data/raw/quarantine.jsonl", "rows": totals["rows_quarantined"]},
    }
    write_json(OUT / "manifest.json", manifest)
    if shown < totals["rows_quarantined"]:
        log.warning("%d more quarantined rows are listed in data/raw/quarantine.jsonl", totals["rows_quarantined"] - shown)
    fraction = totals["rows_quarantined"] / totals["rows_in"] if totals["rows_in"] else 0.0
    track_stage("fetch", tracking.experiment, fetch.model_dump(mode="json"),
                {"rows": totals, "sources": {i["name"]: {k: i[k] for k in ("rows_in", "rows_kept", "rows_quarantined")} for i in inputs}},
                [OUT / "manifest.json"])
    if totals["rows_kept"] == 0:
        raise PipelineError("no usable rows: every input row was quarantined (see data/raw/quarantine.jsonl)")
    if fraction > fetch.max_quarantine_fraction:
        raise PipelineError(
            f"{fraction:.1%} of rows were quarantined, above fetch.max_quarantine_fraction="
            f"{fetch.max_quarantine_fraction}; see data/raw/quarantine.jsonl"
        )


if __name__ == "__main__":
    run_stage("fetch", ["fetch", "tracking"], main)
