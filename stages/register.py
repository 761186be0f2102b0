"""Stage 6, register: log models/final to MLflow as a pyfunc translator, register a version, set its alias.

    python -m stages.register

Tags the version with the git commit, the md5 of every DVC out in dvc.lock, the params, and the
evaluation scores. Registering the same model files again reuses their version instead of adding one.
The gate in register.gate (minimum scores, required test sets, no significant drop against the
champion) decides whether the version gets the candidate alias; every rule's result goes to MLflow.
Writes reports/register.json with the model name, version, alias, MLflow run id and gate results.
"""

from __future__ import annotations

import json
import logging
import os
import warnings

from bayling.errors import PipelineError
from bayling.params import PARAMS_FILE, RegisterParams, TrackingParams, flatten, read_params_file
from stages._common import ROOT, read_json, run_stage, write_json

log = logging.getLogger("register")
FINAL = ROOT / "models" / "final"


def main(register: RegisterParams, tracking: TrackingParams) -> None:
    # MLflow nags about predict() type hints and input examples either way; neither applies to this flavour.
    warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\..*")
    # An unreachable server fails in seconds, not after MLflow's multi-minute default retry budget;
    # the re-run then finds the version by its model hash instead of registering it twice.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    import mlflow

    from bayling import gate, registry
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
    results = gate.evaluate_gate(metrics, register.gate)
    gate_passed = gate.passed(results)
    for r in results:
        log.info("gate %s %s: %s", r.rule, r.target, "pass" if r.passed else f"FAIL (value {r.value}, threshold {r.threshold}) {r.detail}")
    tags["gate"] = "passed" if gate_passed else "failed"
    tags["gate.results"] = json.dumps(gate.as_records(results))
    model_sha256 = directory_sha256(FINAL)
    try:
        with stage_run(ROOT, "register", tracking.experiment, {"git_commit": git["commit"]}) as run:
            mlflow.log_params({"model_name": register.model_name, "alias": register.alias, "model_sha256": model_sha256})
            mlflow.log_metrics({k: float(v) for k, v in tags.items() if k.startswith("eval.")})
            mlflow.log_metrics({f"gate.{r.rule}.{r.target}": float(r.passed) for r in results})
            mlflow.log_dict({"passed": gate_passed, "rules": gate.as_records(results)}, "gate.json")
            # later evaluations test significance against this version's own predictions
            mlflow.log_artifacts(str(ROOT / "reports" / "eval" / "predictions"), "predictions")
            result = registry.register(
                model_dir=FINAL, code_dir=ROOT / "bayling", model_name=register.model_name,
                alias=register.alias if gate_passed else None,
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
        "gate": {"passed": gate_passed, "rules": gate.as_records(results)},
    })
    verb = "registered" if result.created else "re-used"
    if gate_passed:
        log.info("%s %s version %s with alias '%s' (run %s)", verb, result.model_name, result.version, result.alias, result.run_id)
    else:
        log.warning("%s %s version %s, but the gate failed: no '%s' alias (run %s)", verb, result.model_name, result.version,
                    register.alias, result.run_id)


if __name__ == "__main__":
    run_stage("register", ["register", "tracking"], main)
