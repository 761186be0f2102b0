"""The fetch stage's work: every source read, normalised and admitted into one corpus, with a manifest
that balances rows in = rows kept + rows quarantined for each input."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bayling.config.fetch import FetchParams
from bayling.core.errors import PipelineError
from bayling.core.quarantine import Quarantined
from bayling.core.storage import atomic_writer, materialize, sha256_of
from bayling.fetch.ingest import CorpusBuilder, CorpusRow, parse_source

log = logging.getLogger(__name__)


def build_corpus(fetch: FetchParams, root: Path, out: Path, on_quarantine: Callable[[Quarantined], None]) -> dict[str, Any]:
    """Write out/corpus.jsonl and out/quarantine.jsonl from the sources; return the manifest.

    Each output appears atomically. A file whose sha256 differs from the one pinned in params fails
    the stage before anything is replaced.
    """
    builder = CorpusBuilder(dedupe=fetch.dedupe)
    inputs = []
    with atomic_writer(out / "corpus.jsonl") as corpus, atomic_writer(out / "quarantine.jsonl") as quarantine:
        for source in fetch.sources:
            keyed = source.keyed_uris()
            with ExitStack() as stack:
                paths, infos = {}, []
                for key, uri in keyed.items():
                    path, info = stack.enter_context(materialize(uri, root=root, s3_endpoint_url=fetch.s3_endpoint_url))
                    expected = source.sha256.get(uri)
                    if expected and expected != info.sha256:
                        raise PipelineError(f"{uri}: sha256 is {info.sha256}, but params.yaml expects {expected}")
                    paths[key] = path
                    infos.append(info)
                for record in parse_source(
                    source.name, source.format, paths, keyed,
                    columns=source.columns, required=source.languages, max_rows=source.max_rows,
                ):
                    record = builder.admit(record)
                    if isinstance(record, CorpusRow):
                        corpus.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
                    else:
                        quarantine.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
                        on_quarantine(record)
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
            log.info("%s: %d rows in, %d kept, %d quarantined", source.name, inputs[-1]["rows_in"], inputs[-1]["rows_kept"],
                     inputs[-1]["rows_quarantined"])
    totals = {k: sum(i[k] for i in inputs) for k in ("rows_in", "rows_kept", "rows_quarantined")}
    return {
        "inputs": inputs,
        "totals": totals,
        "corpus": {"path": "data/raw/corpus.jsonl", "sha256": sha256_of(out / "corpus.jsonl"), "rows": totals["rows_kept"]},
        "quarantine": {"path": "data/raw/quarantine.jsonl", "rows": totals["rows_quarantined"]},
    }


def check_quarantine_share(manifest: dict[str, Any], max_fraction: float) -> None:
    """Fail (after the report is written) when nothing or too much of the input was usable."""
    totals = manifest["totals"]
    if totals["rows_kept"] == 0:
        raise PipelineError("no usable rows: every input row was quarantined (see data/raw/quarantine.jsonl)")
    fraction = totals["rows_quarantined"] / totals["rows_in"] if totals["rows_in"] else 0.0
    if fraction > max_fraction:
        raise PipelineError(
            f"{fraction:.1%} of rows were quarantined, above fetch.max_quarantine_fraction="
            f"{max_fraction}; see data/raw/quarantine.jsonl"
        )
