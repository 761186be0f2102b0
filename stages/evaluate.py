"""Stage 5, evaluate: translate every configured test set with the fine-tuned and the base model, score,
compare with reference systems and with the current champion, and report.

    python -m stages.evaluate

Reads evaluate.test_sets (the held-out split data/synth/heldout.jsonl, WMT-style files, FLORES-style
folders), models/final and base_model.path; the champion's stored predictions from the MLflow registry.
Writes reports/eval/metrics.json (flat keys), per_language.csv, predictions/ (BayLing-80 answers and
reviews under predictions/instructions/), review.json (scores and the most regressed and improved segments
per direction), report.html with charts/, and run.json.
Scoring an existing hypothesis file is `python -m tools.score`.
"""

from __future__ import annotations

import csv
import logging
import shutil

from bayling.config.base_model import BaseModelParams
from bayling.config.evaluate import EvaluateParams
from bayling.config.register import RegisterParams
from bayling.config.tracking import TrackingParams
from bayling.core.errors import PipelineError
from bayling.core.jsonl import iter_jsonl, write_jsonl
from stages._common import ROOT, run_stage, write_json

log = logging.getLogger("evaluate")
HELDOUT = ROOT / "data" / "synth" / "heldout.jsonl"
FINAL = ROOT / "models" / "final"
OUT = ROOT / "reports" / "eval"


def main(evaluate: EvaluateParams, base_model: BaseModelParams, register: RegisterParams, tracking: TrackingParams) -> None:
    from bayling.core.records import Conversation
    from bayling.core.tracking import ResilientLogger, optional_stage_run, tracking_uri
    from bayling.evaluate.report import model_comparison, render_html
    from bayling.evaluate.review import write_review
    from bayling.evaluate.run import evaluate_models

    if not FINAL.exists():
        raise PipelineError("models/final not found: run `python -m stages.train` first")
    heldout = None
    if any(t.kind == "heldout" for t in evaluate.test_sets):
        if not HELDOUT.exists():
            raise PipelineError("data/synth/heldout.jsonl not found: run `python -m stages.synthesize` first")
        heldout = map(Conversation.from_json, iter_jsonl(HELDOUT))
    result = evaluate_models(evaluate, base_model, register, ROOT, FINAL, heldout, tracking_uri(ROOT))

    for folder in ("predictions", "charts"):
        shutil.rmtree(OUT / folder, ignore_errors=True)
    for label, run in result.runs.items():
        for name, by_direction in run.predictions.items():
            for direction, predictions in by_direction.items():
                write_jsonl(OUT / "predictions" / label / name / f"{direction}.jsonl", predictions)
        if run.answers is not None:
            write_jsonl(OUT / "predictions" / "instructions" / f"{label}.jsonl",
                        ({"question_id": q.id, "model_id": label, "text": a} for q, a in zip(result.questions, run.answers)))
    if result.reviews:
        write_jsonl(OUT / "predictions" / "instructions" / "reviews.jsonl", result.reviews)
    write_review(OUT / "review.json", result.review)
    write_json(OUT / "metrics.json", result.metrics)
    with open(OUT / "per_language.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(result.rows[0]))
        writer.writeheader()
        writer.writerows(result.rows)
    charts = [OUT / "charts" / f"{metric}.png" for metric in ("chrf_pp", "bleu")]
    for chart, metric in zip(charts, ("chrf_pp", "bleu")):
        model_comparison(
            result.rows, metric, ["final", "base", "champion"], chart, f"{metric} per direction: candidate vs base vs champion"
        )
    (OUT / "report.html").write_text(render_html(result.metrics, result.rows, charts, result.report_models(), result.review), "utf-8")

    logger = ResilientLogger()
    with optional_stage_run(ROOT, "evaluate", tracking.experiment) as run:
        logger.active = run is not None
        logger.log_params(
            {
                "evaluate.test_sets": ",".join(t.name for t in evaluate.test_sets),
                "evaluate.num_beams": evaluate.num_beams,
                "evaluate.max_new_tokens": evaluate.max_new_tokens,
                "evaluate.batch_size": evaluate.batch_size,
            }
        )
        logger.log_metrics({k.replace("/", "_"): v for k, v in result.metrics.items() if isinstance(v, (int, float)) and v == v})
        logger.set_tags({k: v for k, v in result.metrics.items() if k.startswith("signature.")})
        for artifact in [OUT / "metrics.json", OUT / "per_language.csv", OUT / "review.json", OUT / "report.html", *charts]:
            logger.log_artifact(artifact, "report")
    write_json(
        OUT / "run.json",
        {"run_id": run.info.run_id if run is not None else None, "tracking_failures": logger.failures, "timing": result.timing()},
    )


if __name__ == "__main__":
    run_stage("evaluate", ["evaluate", "base_model", "register", "tracking"], main)
