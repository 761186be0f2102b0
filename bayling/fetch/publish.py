"""Putting a fetched corpus in place, or refusing it: nothing usable, or too much of it quarantined, leaves
the previous corpus where it was and the refused fetch's report beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bayling.core.errors import PipelineError
from bayling.core.jsonl import write_json

INCOMING = ".incoming"  # where a fetch writes before it knows the result is fit to replace the corpus
FAILED = "failed"  # the report of a fetch that was refused, next to the corpus it left in place


def refusal(manifest: dict[str, Any], max_fraction: float) -> str | None:
    """Why this fetch must not replace the corpus: nothing usable, or too much of it rejected."""
    totals = manifest["totals"]
    if totals["rows_kept"] == 0:
        return "no usable rows: every input row was quarantined"
    fraction = totals["rows_quarantined"] / totals["rows_in"] if totals["rows_in"] else 0.0
    if fraction > max_fraction:
        return f"{fraction:.1%} of rows were quarantined, above fetch.max_quarantine_fraction={max_fraction}"
    return None


def publish(out: Path, manifest: dict[str, Any], max_fraction: float) -> None:
    """Replace the corpus with the one in out/.incoming/, or refuse and leave the previous corpus in place.

    A refused fetch writes its manifest and quarantine into out/failed/, beside the corpus it did not
    replace, and fails the stage; the next accepted fetch removes that report.
    """
    import shutil

    staging, failed = out / INCOMING, out / FAILED
    reason = refusal(manifest, max_fraction)
    if reason:
        shutil.rmtree(failed, ignore_errors=True)
        failed.mkdir(parents=True)
        (staging / "quarantine.jsonl").replace(failed / "quarantine.jsonl")
        write_json(failed / "manifest.json", {**manifest, "refused": reason,
                                              "quarantine": {**manifest["quarantine"], "path": f"data/raw/{FAILED}/quarantine.jsonl"}})
        shutil.rmtree(staging)
        kept = "the previous corpus stays in place" if (out / "corpus.jsonl").exists() else "no corpus was written"
        raise PipelineError(f"{reason}; {kept}; see data/raw/{FAILED}/quarantine.jsonl and manifest.json")
    (staging / "corpus.jsonl").replace(out / "corpus.jsonl")
    (staging / "quarantine.jsonl").replace(out / "quarantine.jsonl")
    write_json(out / "manifest.json", manifest)
    staging.rmdir()
    shutil.rmtree(failed, ignore_errors=True)
