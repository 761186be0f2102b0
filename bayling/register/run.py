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
                   final: Path) -> tuple[Registration, list[gate.RuleResult], dict[str, Any], str]:
    """Gate, log and register `final`, record this gate evaluation on the version and set the candidate alias
    when the version's verdict over all its evaluations passes. Returns the registration (with the alias
    set, or none), this evaluation's rule results, the version's verdict and the model hash."""
    import hashlib
    from dataclasses import replace
    from datetime import UTC, datetime

    import mlflow
    from botocore.exceptions import BotoCoreError, ClientError
    from mlflow.exceptions import MlflowException

    from bayling.core.lineage import directory_sha256
    from bayling.core.tracking import stage_run, tracking_uri
    from bayling.register import registry
    from bayling.register.approval import record_gate_verdict
    from bayling.register.champion import alias_holder
    from bayling.register.identity import current_identity

    tags = version_tags(inputs, root)
    model_sha256 = directory_sha256(final)
    uri = tracking_uri(root)
    evaluation = f"{inputs.eval_run.get('run_id') or 'untracked'}:" + hashlib.sha256(
        json.dumps(inputs.metrics, sort_keys=True).encode()).hexdigest()[:16]
    try:
        try:
            identity = current_identity(uri)
        except PipelineError as exc:
            raise PipelineError(f"could not register the model with MLflow at {uri}: {exc}") from None
        with stage_run(root, "register", tracking.experiment, {"git_commit": tags["git_commit"]}) as run:
            client = mlflow.MlflowClient()
            holder = alias_holder(client, register.model_name, register.champion_alias)
            champion = str(holder.version) if holder is not None else None
            if champion is not None and (holder.tags or {}).get(registry.MODEL_IDENTITY_TAG) == model_sha256:
                champion = None  # the candidate is the champion's own files: nothing to compare against
            results = gate.evaluate_gate(inputs.metrics, register.gate, champion)
            this_passed = gate.passed(results)
            tags["gate.results"] = json.dumps(gate.as_records(results))
            mlflow.log_params({"model_name": register.model_name, "alias": register.alias, "model_sha256": model_sha256})
            mlflow.log_metrics({k: float(v) for k, v in tags.items() if k.startswith("eval.")})
            mlflow.log_metrics({f"gate.{r.rule}.{r.target}": float(r.passed) for r in results})
            mlflow.log_dict({"passed": this_passed, "rules": gate.as_records(results)}, "gate.json")
            # later evaluations test significance against this version's own predictions
            mlflow.log_artifacts(str(root / "reports" / "eval" / "predictions"), "predictions")
            registration = registry.register(model_dir=final, code_dir=root / "bayling", model_name=register.model_name,
                                             model_sha256=model_sha256, run_id=run.info.run_id, tags=tags,
                                             creation_tags={"registered_by": identity.name,
                                                            "registered_by_authenticated": str(identity.authenticated).lower()})
            failed = [f"{r.rule} {r.target}" for r in results if not r.passed]
            verdict = record_gate_verdict(client, register.model_name, registration.version, this_passed, failed,
                                          register.gate.model_dump(mode="json"), evaluation, run.info.run_id)
            client.set_model_version_tag(register.model_name, registration.version, "gate", "passed" if verdict["passed"] else "failed")
            if verdict["passed"]:
                client.set_registered_model_alias(register.model_name, register.alias, registration.version)
                client.set_model_version_tag(register.model_name, registration.version, f"{register.alias}_at",
                                             datetime.now(UTC).isoformat(timespec="seconds"))
                registration = replace(registration, alias=register.alias)
    except (MlflowException, OSError, BotoCoreError, ClientError) as exc:  # the server or its artifact store failed
        raise PipelineError(f"could not register the model with MLflow at {uri}: {type(exc).__name__}: {exc}") from exc
    return registration, results, verdict, model_sha256
