"""The register stage's work: the gate applied to the evaluation, the model logged and registered (or its
existing version re-used) with every lineage tag, and the candidate alias set if the gate passed."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bayling.config.loader import flatten
from bayling.config.register import RegisterParams
from bayling.config.tracking import TrackingParams
from bayling.core.errors import PipelineError
from bayling.core.metric_keys import averages
from bayling.register import gate
from bayling.register.registry import Registration
from bayling.register.training_mix import mix_report

if TYPE_CHECKING:
    from bayling.register.model_card import CardInputs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegisterInputs:
    """What register reads: the evaluation report, the train and evaluate run records, the raw params, and
    for the model card the data card and the train metrics."""

    metrics: dict[str, Any]
    train_run: dict[str, Any]
    eval_run: dict[str, Any]
    params: dict[str, Any]
    data_card: dict[str, Any] = field(default_factory=dict)
    train_metrics: dict[str, Any] = field(default_factory=dict)
    composition: dict[str, Any] = field(default_factory=dict)  # reports/tokenize/composition.json
    drawn: dict[str, Any] = field(default_factory=dict)  # reports/train/drawn.json


def _version_tags(inputs: RegisterInputs, root: Path) -> dict[str, str]:
    """Lineage and scores for the model version: git commit, DVC out md5s, params, macro averages."""
    from bayling.core.lineage import default_remote_url, dvc_lock_outs, git_state
    from bayling.register.lineage_tags import REMOTE_TAG, public_url

    primary = inputs.metrics.get("primary_test_set", "heldout")
    git = git_state(root)
    return {
        "git_commit": git["commit"],
        "git_dirty": str(git["dirty"]).lower(),
        **({REMOTE_TAG: remote} if (remote := public_url(default_remote_url(root))) else {}),
        "train_run_id": inputs.train_run.get("run_id") or "untracked",
        "evaluate_run_id": inputs.eval_run.get("run_id") or "untracked",
        **{f"dvc.{path}.md5": md5 for path, md5 in dvc_lock_outs(root).items()},
        **{f"params.{k}": v for k, v in flatten(inputs.params).items()},
        **{f"eval.{model}.avg.{m}": v for model in ("base", "final", "delta")
           for m, v in averages(inputs.metrics, primary, model).items()},
    }


CARD_ARTIFACT = "model_card/README.md"  # the model card in the register run's artifacts


def _model_card_inputs(register: RegisterParams, inputs: RegisterInputs, tags: dict[str, str], model_sha256: str,
                      run_id: str | None, gate_passed: bool | None) -> CardInputs:
    """What the model card says, from what register read and the lineage tags it put on the version."""
    from bayling.register.model_card import CardInputs, Lineage

    lineage = Lineage(
        git_commit=tags["git_commit"],
        git_dirty={"true": True, "false": False}.get(tags["git_dirty"]),
        dvc_outs={k.removeprefix("dvc.").removesuffix(".md5"): v for k, v in tags.items() if k.startswith("dvc.") and k.endswith(".md5")},
        train_run_id=tags["train_run_id"],
        evaluate_run_id=tags["evaluate_run_id"],
        register_run_id=run_id,
        model_sha256=model_sha256,
        registered_model=register.model_name,
    )
    return CardInputs(card=register.card, params=inputs.params, metrics=inputs.metrics, data_card=inputs.data_card,
                      train_metrics=inputs.train_metrics, lineage=lineage, gate_passed=gate_passed,
                      mix=mix_report(inputs.composition, inputs.drawn, register.mix_tolerance_points))


def _publish_model_card(client: Any, card_inputs: CardInputs, final: Path) -> None:
    """Write the card of a registered version into `final`, log it to the active run as CARD_ARTIFACT and
    show its body (trimmed to what the registry stores) as the version's description."""
    import mlflow

    from bayling.register.model_card import MODEL_CARD_FILE, registry_description, registry_description_limit, render_card

    card = render_card(card_inputs)
    card.save(final / MODEL_CARD_FILE)
    mlflow.log_text(str(card), CARD_ARTIFACT)
    lineage = card_inputs.lineage
    full_card = f"`{CARD_ARTIFACT}` in register run `{lineage.register_run_id}`"
    client.update_model_version(lineage.registered_model, lineage.version,
                                description=registry_description(card.text.lstrip("\n"), registry_description_limit(), full_card))


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
    from bayling.models.champion import alias_holder
    from bayling.register import registry
    from bayling.register.lineage_tags import LINEAGE_ARTIFACTS
    from bayling.register.mlflow_user import current_identity
    from bayling.register.model_card import MODEL_CARD_FILE, render_card
    from bayling.register.tables import log_review_tables
    from bayling.register.verdict import canonical_version, gate_verdict

    tags = _version_tags(inputs, root)
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
            tags["gate.results"] = gate.summary_tag(results)
            # params, which nobody can change once logged, carry what approval relies on: the verdict, the policy
            # that gave it, and who registered (bayling/register/verdict.py); all before the version exists
            policy = json.dumps(register.gate.model_dump(mode="json"), sort_keys=True)
            mlflow.log_params({"model_name": register.model_name, "alias": register.alias, "model_sha256": model_sha256,
                               "gate_passed": str(this_passed).lower(), "gate_policy_sha256": hashlib.sha256(policy.encode()).hexdigest(),
                               "gate_policy": policy if len(policy) <= 6000 else policy[:5990] + "…(cut)",
                               "evaluation": evaluation, "registered_by": identity.name,
                               "registered_by_authenticated": str(identity.authenticated).lower()})
            mlflow.log_metrics({k: float(v) for k, v in tags.items() if k.startswith("eval.")})
            mlflow.log_metrics({f"gate.{r.rule}.{r.target}": float(r.passed) for r in results})
            mlflow.log_dict({"passed": this_passed, "rules": gate.as_records(results)}, "gate.json")
            # later evaluations test significance against this version's own predictions
            mlflow.log_artifacts(str(root / "reports" / "eval" / "predictions"), "predictions")
            log_review_tables(root / "reports" / "eval" / "review.json")  # scores and moved segments per direction, as MLflow tables
            # what flows.reproduce rebuilds from: the exact lock the dvc.*.md5 tags come from, and the params used
            for name in ("dvc.lock", "params.yaml"):
                if (root / name).exists():
                    mlflow.log_artifact(str(root / name), LINEAGE_ARTIFACTS)
            # the card logged inside a new version's files; its number is the registry's to assign, so the card
            # published below (file, run artifact, version description) is the one that names it
            card_inputs = _model_card_inputs(register, inputs, tags, model_sha256, run.info.run_id, this_passed)
            render_card(card_inputs).save(final / MODEL_CARD_FILE)
            registration = registry.register(model_dir=final, code_dir=root / "bayling", model_name=register.model_name,
                                             model_sha256=model_sha256, run_id=run.info.run_id, tags=tags,
                                             creation_tags={"registered_by": identity.name,
                                                            "registered_by_authenticated": str(identity.authenticated).lower()})
            verdict = gate_verdict(client, register.model_name, canonical_version(client, register.model_name, registration.version),
                                   tracking.experiment)
            client.set_model_version_tag(register.model_name, registration.version, "gate", "passed" if verdict["passed"] else "failed")
            if verdict["passed"]:
                client.set_registered_model_alias(register.model_name, register.alias, registration.version)
                client.set_model_version_tag(register.model_name, registration.version, f"{register.alias}_at",
                                             datetime.now(UTC).isoformat(timespec="seconds"))
                registration = replace(registration, alias=register.alias)
            lineage = replace(card_inputs.lineage, version=registration.version, alias=registration.alias or None)
            _publish_model_card(client, replace(card_inputs, lineage=lineage, gate_passed=verdict["passed"]), final)
    except (MlflowException, OSError, BotoCoreError, ClientError) as exc:  # the server or its artifact store failed
        raise PipelineError(f"could not register the model with MLflow at {uri}: {type(exc).__name__}: {exc}") from exc
    return registration, results, verdict, model_sha256
