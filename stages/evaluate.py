"""Stage 5, evaluate: translate every configured test set with the fine-tuned and the base model, score,
compare with reference systems and with the current champion, and report.

    python -m stages.evaluate

Reads evaluate.test_sets (the held-out split data/synth/heldout.jsonl, WMT-style files, FLORES-style
folders), evaluate.xcopa and evaluate.understanding (lm-eval tasks, local copies under lm_eval_tasks/),
models/final and base_model.path; the champion's stored predictions from the MLflow registry.
Writes reports/eval/metrics.json (flat keys), per_language.csv, predictions/ (BayLing-80 answers and
reviews under predictions/instructions/, each understanding document's outcome under
predictions/understanding/), review.json (scores and the most regressed and improved segments
per direction), report.html with charts/, and run.json; nothing, when an output is paired with the wrong
test item (bayling/evaluate/invariants.py).
Scoring an existing hypothesis file is `python -m tools.score`.
"""

from __future__ import annotations

import logging

from bayling.config.base_model import BaseModelParams
from bayling.config.evaluate import EvaluateParams
from bayling.config.register import RegisterParams
from bayling.config.tracking import TrackingParams
from bayling.core.errors import PipelineError
from bayling.core.jsonl import iter_jsonl
from stages._common import project_root, run_stage, write_json

ROOT = project_root()  # read each time the stage runs (see stages/_common.py)

log = logging.getLogger("evaluate")
HELDOUT = ROOT / "data" / "synth" / "heldout.jsonl"
FINAL = ROOT / "models" / "final"
OUT = ROOT / "reports" / "eval"


def main(evaluate: EvaluateParams, base_model: BaseModelParams, register: RegisterParams, tracking: TrackingParams) -> None:
    from bayling.core.records import Conversation
    from bayling.core.tracking import ResilientLogger, optional_stage_run, tracking_uri
    from bayling.evaluate.run import evaluate_to

    if not FINAL.exists():
        raise PipelineError("models/final not found: run `python -m stages.train` first")
    heldout = None
    if any(t.kind == "heldout" for t in evaluate.test_sets):
        if not HELDOUT.exists():
            raise PipelineError("data/synth/heldout.jsonl not found: run `python -m stages.synthesize` first")
        heldout = map(Conversation.from_json, iter_jsonl(HELDOUT))
    result, artifacts = evaluate_to(OUT, evaluate, base_model, register, ROOT, FINAL, heldout, tracking_uri(ROOT))

    logger = ResilientLogger()
    with optional_stage_run(ROOT, "evaluate", tracking.experiment) as run:
        logger.active = run is not None
        logger.log_params(
            {
                "evaluate.test_sets": ",".join(t.name for t in evaluate.test_sets),
                **({"evaluate.understanding": ",".join(u.name for u in evaluate.understanding)} if evaluate.understanding else {}),
                "evaluate.num_beams": evaluate.num_beams,
                "evaluate.max_new_tokens": evaluate.max_new_tokens,
                "evaluate.batch_size": evaluate.batch_size,
            }
        )
        logger.log_metrics({k.replace("/", "_"): v for k, v in result.metrics.items() if isinstance(v, (int, float)) and v == v})
        logger.set_tags({k: v for k, v in result.metrics.items() if k.startswith("signature.")})
        for artifact in artifacts:
            logger.log_artifact(artifact, "report")
    write_json(
        OUT / "run.json",
        {"run_id": run.info.run_id if run is not None else None, "tracking_failures": logger.failures, "timing": result.timing()},
    )


if __name__ == "__main__":
    run_stage("evaluate", ["evaluate", "base_model", "register", "tracking"], main)
