"""The evaluate stage's files, written from one EvaluationResult after the invariants hold.

    reports/eval/metrics.json        flat keys (bayling.core.metric_keys)
    reports/eval/per_language.csv    one row per test set and direction, then per understanding entry and language
    reports/eval/predictions/        {model}/{test set}/{direction}.jsonl; BayLing-80 answers and reviews under instructions/;
                                     understanding/{model}/{entry}/{language}.jsonl: each document's outcome
    reports/eval/review.json         scores and the most regressed and improved segments per direction
    reports/eval/report.html         with charts/

Nothing is written, and the files of the previous evaluation stay as they were, when an output is paired
with the wrong item (bayling.evaluate.invariants).
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from bayling.core.jsonl import write_json, write_jsonl
from bayling.evaluate.invariants import check_evaluation
from bayling.evaluate.outcomes import outcome_files
from bayling.evaluate.understanding_runs import OUTCOMES_FOLDER

if TYPE_CHECKING:
    from bayling.evaluate.evaluation import EvaluationResult

CHART_METRICS = ("chrf_pp", "bleu")


def write_outputs(result: EvaluationResult, out: Path) -> list[Path]:
    """Check, then write the evaluation's files into `out`; returns the report files worth logging as artifacts."""
    from bayling.evaluate.report import model_comparison, render_html
    from bayling.evaluate.review import write_review

    check_evaluation(result.test_sets, {label: run.predictions for label, run in result.runs.items()}, result.champion,
                     result.review)
    for folder in ("predictions", "charts"):
        shutil.rmtree(out / folder, ignore_errors=True)
    for label, run in result.runs.items():
        for name, by_direction in run.predictions.items():
            for direction, predictions in by_direction.items():
                write_jsonl(out / "predictions" / label / name / f"{direction}.jsonl", predictions)
        if run.understanding is not None:
            outcome_files(run.understanding.outcomes, out / "predictions" / OUTCOMES_FOLDER / label)
        if run.answers is not None:
            write_jsonl(out / "predictions" / "instructions" / f"{label}.jsonl",
                        ({"question_id": q.id, "model_id": label, "text": a} for q, a in zip(result.questions, run.answers)))
    if result.reviews:
        write_jsonl(out / "predictions" / "instructions" / "reviews.jsonl", result.reviews)
    write_review(out / "review.json", result.review)
    write_json(out / "metrics.json", result.metrics)
    table = [*result.rows, *result.understanding_rows()]
    columns = list(dict.fromkeys(column for row in table for column in row))
    with open(out / "per_language.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(table)
    charts = [out / "charts" / f"{metric}.png" for metric in CHART_METRICS]
    for chart, metric in zip(charts, CHART_METRICS):
        model_comparison(result.rows, metric, ["final", "base", "champion"], chart,
                         f"{metric} per direction: candidate vs base vs champion")
    (out / "report.html").write_text(render_html(result.metrics, result.rows, charts, result.report_models(), result.review,
                                                     result.understanding_rows()), "utf-8")
    return [out / "metrics.json", out / "per_language.csv", out / "review.json", out / "report.html", *charts]
