"""Stage 6, register: log models/final to MLflow as a pyfunc translator, register a version, set its alias.

    python -m stages.register

Tags the version with the git commit, the md5 of every DVC out in dvc.lock, the params, and the
evaluation scores. Registering the same model files again reuses their version instead of adding one.
Writes reports/register.json with the model name, version, alias and MLflow run id.
"""

from __future__ import annotations

import logging
import warnings

from bayling.errors import PipelineError
from bayling.params import PARAMS_FILE, RegisterParams, TrackingParams, flatten, read_params_file
from stages._common import ROOT, read_json, run_stage, write_json

log = logging.getLogger("register")
FINAL = ROOT / "models" / "final"


def main(register: RegisterParams, tracking: TrackingParams) -> None:
    # MLflow nags about predict() type hints and input examples either way; neither applies to this flavour.
    warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\..*")
    import mlflow

    from bayling import registry
    from bayling.evaluation import averages
    from bayling.lineage import directory_sha256, dvc_lock_outs, git_state
    from bayling.tracking import stage_run, tracking_uri

    if not FINAL.exists():
        raise PipelineError("models/final not found: run `python -m stages.train` first")
    metrics = read_json(ROOT / "reports" / "eval" / "metrics.json", "reports/eval/metrics.json (evaluate)")
    train_run = read_json(ROOT / "reports" / "train" / "run.json", "reports/train/run.json (train)")
    eval_run = read_json(ROOT / "reports" / "eval" / "run.json", "reports/eval/run.json (evaluate)")
    params, _ = read_params_file(ROOT / PARAMS_FILE)
    primary = metrics.get("primary_test_set", "heldout")
    git = git_state(ROOT)
    tags = {
        "git_commit": git["commit"],
        "git_dirty": str(git["dirty"]).lower(),
        "train_run_id": train_run.get("run_id") or "untracked",
        "evaluate_run_id": eval_run.get("run_id") or "untracked",
        **{f"dvc.{path}.md5": md5 for path, md5 in dvc_lock_outs(ROOT).items()},
        **{f"params.{k}": v for k, v in flatten(params).items()},
        **{f"eval.{model}.avg.{m}": v for model in ("base", "final", "delta") for m, v in averages(metrics, primary, model).items()},
    }
    model_sha256 = directory_sha256(FINAL)
    try:
        with stage_run(ROOT, "register", tracking.experiment, {"git_commit": git["commit"]}) as run:
            mlflow.log_params({"model_name": register.model_name, "alias": register.alias, "model_sha256": model_sha256})
            mlflow.log_metrics({k: float(v) for k, v in tags.items() if k.startswith("eval.")})
            # later evaluations test significance against this version's own predictions
            mlflow.log_artifacts(str(ROOT / "reports" / "eval" / "predictions"), "predictions")
            result = registry.register(
                model_dir=FINAL, code_dir=ROOT / "bayling", model_name=register.model_name, alias=register.alias,
                model_sha256=model_sha256, run_id=run.info.run_id, tags=tags,
            )
    except PipelineError:
        raise
    except Exception as exc:
        raise PipelineError(f"could not register the model with MLflow at {tracking_uri(ROOT)}: {exc}") from exc
    write_json(ROOT / "reports" / "register.json", {
        "model_name": result.model_name,
        "version": result.version,
        "alias": result.alias,
        "run_id": result.run_id,
        "created": result.created,
        "model_uri": result.model_uri,
        "model_sha256": model_sha256,
        "tracking_uri": tracking_uri(ROOT),
    })
    verb = "registered" if result.created else "re-used"
    log.info("%s %s version %s with alias '%s' (run %s)", verb, result.model_name, result.version, result.alias, result.run_id)


if __name__ == "__main__":
    run_stage("register", ["register", "tracking"], main)
