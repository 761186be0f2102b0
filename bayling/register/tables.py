"""The evaluation's review (reports/eval/review.json) as MLflow tables on the register run, so the
scores per direction and the segments that moved most sit beside the registered version in the MLflow
UI (Artifacts, and the evaluation tables view), queryable with `mlflow.load_table`.

Two tables: `review/directions.json`, one row per test set and direction with the candidate's,
champion's and base model's BLEU, chrF and chrF++ and the p-values against the champion and the base; and
`review/segments.json`, one row per regressed or improved segment with its source, reference, both
outputs and their sentence chrF++; and `review/understanding_moved.json` when an understanding task moved.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from bayling.core.metric_keys import METRICS

log = logging.getLogger(__name__)
DIRECTIONS_TABLE = "review/directions.json"
MOVED_TABLE = "review/understanding_moved.json"
SEGMENTS_TABLE = "review/segments.json"
SEGMENT_FIELDS = ("id", "delta", "source", "reference", "comparator_output", "comparator_chrf_pp", "candidate_output",
                  "candidate_chrf_pp")


def directions_table(review: dict[str, Any]) -> dict[str, list[Any]]:
    """Columns of the per-direction table; a score a model lacks (no champion, no base run) is None."""
    columns: dict[str, list[Any]] = {name: [] for name in ("test_set", "direction", "segments", "compared_with")}
    for model in ("candidate", "champion", "base"):
        columns.update({f"{model}_{m}": [] for m in METRICS})
    columns.update({f"p_vs_{other}_{m}": [] for other in ("champion", "base") for m in METRICS})
    for d in review.get("directions", []):
        columns["test_set"].append(d["test_set"])
        columns["direction"].append(d["direction"])
        columns["segments"].append(d["segments"])
        columns["compared_with"].append(d["comparator_label"])
        for model in ("candidate", "champion", "base"):
            for m in METRICS:
                columns[f"{model}_{m}"].append((d["scores"].get(model) or {}).get(m))
        for other in ("champion", "base"):
            for m in METRICS:
                columns[f"p_vs_{other}_{m}"].append((d.get(f"p_vs_{other}") or {}).get(m))
    return columns


def segments_table(review: dict[str, Any]) -> dict[str, list[Any]]:
    """Columns of the segments table: each direction's regressed then improved segments, ranked."""
    columns: dict[str, list[Any]] = {name: [] for name in ("test_set", "direction", "compared_with", "change", "rank", *SEGMENT_FIELDS)}
    for d in review.get("directions", []):
        for change in ("regressed", "improved"):
            for rank, segment in enumerate(d[change], start=1):
                columns["test_set"].append(d["test_set"])
                columns["direction"].append(d["direction"])
                columns["compared_with"].append(d["comparator_label"])
                columns["change"].append(change)
                columns["rank"].append(rank)
                for name in SEGMENT_FIELDS:
                    columns[name].append(segment[name])
    return columns


def log_review_tables(review_path: Path) -> None:
    """Log both tables and the review itself to the active MLflow run; without a review file (an
    evaluation from before reviews existed) there is nothing to log, which is said, not failed."""
    import mlflow

    if not review_path.is_file():
        log.warning("%s not found: the register run has no review tables (run the evaluate stage again)", review_path)
        return
    review = json.loads(review_path.read_text("utf-8"))
    mlflow.log_table(directions_table(review), DIRECTIONS_TABLE)
    segments = segments_table(review)
    if segments["id"]:
        mlflow.log_table(segments, SEGMENTS_TABLE)
    moved = review.get("understanding_moved") or []
    if moved:  # one row per understanding task, language and metric that moved against base or champion
        mlflow.log_table({field: [row.get(field) for row in moved] for field in moved[0]}, MOVED_TABLE)
    mlflow.log_artifact(str(review_path), "review")
