"""The fetch stage's library entry: every source read, normalised and admitted into one corpus, with a
manifest that balances rows in = rows kept + rows quarantined for each input (bayling.fetch.publish then
puts it in place or refuses it)."""

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
from bayling.core.records import CorpusRow
from bayling.core.storage import atomic_writer, materialize, sha256_of
from bayling.core.textio import detect_encoding, line_endings
from bayling.fetch.ingest import CorpusBuilder, HeaderRow, parse_source
from bayling.fetch.publish import INCOMING

log = logging.getLogger(__name__)


def build_corpus(fetch: FetchParams, root: Path, out: Path, on_quarantine: Callable[[Quarantined], None]) -> dict[str, Any]:
    """Write the corpus and quarantine from the sources into out/.incoming/; return the manifest.

    Nothing in `out` is replaced here (see bayling.fetch.publish). A file whose sha256 differs from the one pinned
    in params fails the stage at once.
    """
    import shutil

    staging = out / INCOMING
    try:
        return _build(fetch, root, staging, on_quarantine)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # a failed read leaves nothing among the outputs
        raise


def _build(fetch: FetchParams, root: Path, staging: Path, on_quarantine: Callable[[Quarantined], None]) -> dict[str, Any]:
    builder = CorpusBuilder(dedupe=fetch.dedupe)
    inputs = []
    with atomic_writer(staging / "corpus.jsonl") as corpus, atomic_writer(staging / "quarantine.jsonl") as quarantine:
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
                    infos.append({**vars(info), "encoding": detect_encoding(path), "line_endings": line_endings(path)})
                for record in parse_source(
                    source.name, source.format, paths, keyed,
                    columns=source.columns, required=source.languages, max_rows=source.max_rows,
                ):
                    record = builder.admit(record)
                    if isinstance(record, HeaderRow):
                        continue
                    if isinstance(record, CorpusRow):
                        corpus.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
                    else:
                        quarantine.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
                        on_quarantine(record)
            stats = builder.stats.get(source.name, {})
            inputs.append({
                "name": source.name,
                "format": source.format,
                "files": infos,
                "rows_in": stats.get("rows_in", 0),
                "rows_kept": stats.get("rows_kept", 0),
                "rows_quarantined": stats.get("rows_quarantined", 0),
                "header_rows_skipped": stats.get("header_rows_skipped", 0),
                "quarantine_reasons": {k.removeprefix("reason:"): v for k, v in sorted(stats.items()) if k.startswith("reason:")},
            })
            log.info("%s: %d rows in, %d kept, %d quarantined", source.name, inputs[-1]["rows_in"], inputs[-1]["rows_kept"],
                     inputs[-1]["rows_quarantined"])
    totals = {k: sum(i[k] for i in inputs) for k in ("rows_in", "rows_kept", "rows_quarantined")}
    return {
        "inputs": inputs,
        "totals": totals,
        "corpus": {"path": "data/raw/corpus.jsonl", "sha256": sha256_of(staging / "corpus.jsonl"), "rows": totals["rows_kept"]},
        "quarantine": {"path": "data/raw/quarantine.jsonl", "rows": totals["rows_quarantined"]},
    }
