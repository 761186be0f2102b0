"""The register stage's work: the gate applied to the evaluation, the model logged and registered (or its
existing version re-used) with every lineage tag, and the candidate alias set if the gate passed."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bayling.config.loader import flatten
from bayling.config.register import RegisterParams
from bayling.config.tracking import TrackingParams
from bayling.core.errors import PipelineError
from bayling.core.metric_keys import averages
from bayling.register import gate
from bayling.register.registry import Registration

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegisterInputs:
    """What register reads: the evaluation report, the train and evaluate run records, the raw params."""

    metrics: dict[str, Any]
    train_run: dict[str, Any]
    eval_run: dict[str, Any]
    params: dict[str, Any]


def version_tags(inputs: RegisterInputs, root: Path) -> dict[str, str]:
    """Lineage and scores for the model version: git commit, DVC out md5s, params, macro averages."""
    from bayling.core.lineage import dvc_lock_outs, git_state

    primary = inputs.metrics.get("primary_test_set", "heldout")
    git = git_state(root)
    return {
        "git_commit": git["commit"],
        "git_dirty": str(git["dirty"]).lower(),
        "train_run_id": inputs.train_run.get("run_id") or "untracked",
        "evaluate_run_id": inputs.eval_run.get("run_id") or "untracked",
        **{f"dvc.{path}.md5": md5 for path, md5 in dvc_lock_outs(root).items()},
        **{f"params.{k}": v for k, v in flatten(inputs.params).items()},
        **{f"eval.{model}.avg.{m}": v for model in ("base", "final", "delta")
           for m, v in averages(inputs.metrics, primary, model).items()},
    }


def register_model(register: RegisterParams, tracking: TrackingParams, inputs: RegisterInputs, root: Path,
                   final: Path) -> tuple[Registration, list[gate.RuleResult], str]:
    """Gate, log and register `final`; returns the registration, the gate's rule results and the model hash."""
    import mlflow
    from botocore.exceptions import BotoCoreError, ClientError
    from mlflow.exceptions import MlflowException

    from bayling.core.lineage import directory_sha256
    from bayling.core.tracking import stage_run, tracking_uri
    from bayling.register import registry

    tags = version_tags(inputs, root)
    results = gate.evaluate_gate(inputs.metrics, register.gate)
    gate_passed = gate.passed(results)
    tags["gate"] = "passed" if gate_passed else "failed"
    tags["gate.results"] = json.dumps(gate.as_records(results))
    model_sha256 = directory_sha256(final)
    try:
        with stage_run(root, "register", tracking.experiment, {"git_commit": tags["git_commit"]}) as run:
            mlflow.log_params({"model_name": register.model_name, "alias": register.alias, "model_sha256": model_sha256})
            mlflow.log_metrics({k: float(v) for k, v in tags.items() if k.startswith("eval.")})
            mlflow.log_metrics({f"gate.{r.rule}.{r.target}": float(r.passed) for r in results})
            mlflow.log_dict({"passed": gate_passed, "rules": gate.as_records(results)}, "gate.json")
            # later evaluations test significance against this version's own predictions
            mlflow.log_artifacts(str(root / "reports" / "eval" / "predictions"), "predictions")
            registration = registry.register(
                model_dir=final, code_dir=root / "bayling", model_name=register.model_name,
                alias=register.alias if gate_passed else None,
                model_sha256=model_sha256, run_id=run.info.run_id, tags=tags,
            )
    except (MlflowException, OSError, BotoCoreError, ClientError) as exc:  # the server or its artifact store failed
        raise PipelineError(f"could not register the model with MLflow at {tracking_uri(root)}: {type(exc).__name__}: {exc}") from exc
    return registration, results, model_sha256
