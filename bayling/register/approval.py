"""Human approval of a registered candidate: the decision is recorded on the model version as tags,
and an approval moves the champion alias. MLflow keeps no alias history, so the tags are the record."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from bayling.core.errors import PipelineError
from bayling.core.metric_keys import averages, score_keys
from bayling.register.champion import alias_holder

Decision = Literal["approve", "reject", "timeout"]


@dataclass(frozen=True)
class DecisionRecord:
    version: str
    decision: str
    reviewed_by: str
    reviewed_at: str
    flow_run_id: str
    previous_champion: str
    note: str
    champion_moved: bool


def pause_key(model_name: str, version: str) -> str:
    """The key a retrain run pauses under while it waits for a decision on this version."""
    return f"approval-{model_name}-v{version}"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def apply_decision(
    client: Any, model_name: str, version: str, decision: Decision, reviewer: str, note: str = "",
    flow_run_id: str = "none", champion_alias: str = "champion", override_gate: bool = False,
) -> DecisionRecord:
    """Record the decision on the version; on approve, point the champion alias at it. Reject and
    timeout leave the champion where it is. A version the gate failed is approved only with
    override_gate, and the override is recorded with the decision."""
    from mlflow.exceptions import MlflowException

    try:
        found = client.get_model_version(model_name, version)
    except MlflowException:
        raise PipelineError(f"{model_name} has no version {version}") from None
    gate = (found.tags or {}).get("gate")
    if decision == "approve" and gate == "failed" and not override_gate:
        raise PipelineError(f"{model_name} version {version} failed the gate (see its gate.results tag); "
                            "approving it anyway needs --override-gate")
    holder = alias_holder(client, model_name, champion_alias)
    previous = str(holder.version) if holder is not None else "none"
    if decision == "approve" and previous == str(version):
        raise PipelineError(f"{model_name} version {version} already holds '{champion_alias}'")
    record = DecisionRecord(str(version), decision, reviewer, now(), flow_run_id, previous, note, decision == "approve")
    tags = {"decision": decision, "reviewed_by": reviewer, "reviewed_at": record.reviewed_at,
            "flow_run_id": flow_run_id, "previous_champion": previous, "note": note}
    if decision == "approve" and gate == "failed":
        tags["gate_overridden_by"] = reviewer
    for key, value in tags.items():
        client.set_model_version_tag(model_name, version, key, value)
    history = _history(client, model_name, version)
    history.append({k: v for k, v in tags.items()})
    client.set_model_version_tag(model_name, version, "decision_history", json.dumps(history)[-5000:])
    if decision == "approve":
        client.set_registered_model_alias(model_name, champion_alias, version)
        client.set_model_version_tag(model_name, version, f"{champion_alias}_since", record.reviewed_at)
        if previous != "none":
            client.set_model_version_tag(model_name, previous, f"{champion_alias}_until", record.reviewed_at)
            client.set_model_version_tag(model_name, previous, "superseded_by", str(version))
    return record


def _history(client: Any, model_name: str, version: str) -> list[dict[str, str]]:
    tags = client.get_model_version(model_name, version).tags or {}
    try:
        return list(json.loads(tags.get("decision_history", "[]")))
    except json.JSONDecodeError:
        return []


def review_markdown(registration: dict[str, Any], metrics: dict[str, Any], gate_table: str, report_path: str, tracking_uri: str) -> str:
    """What a reviewer sees in the paused run: scores against base and champion, the gate, where the report is."""
    primary = metrics.get("primary_test_set", "heldout")
    rows = ["| model | BLEU | chrF | chrF++ |", "|---|---:|---:|---:|"]
    for label, model in (("candidate", "final"), ("base", "base")):
        avg = averages(metrics, primary, model)
        if avg:
            rows.append(f"| {label} | {avg['bleu']:.2f} | {avg['chrf']:.2f} | {avg['chrf_pp']:.2f} |")
    champion = [k for k in score_keys(metrics) if k.model == "champion" and k.test_set == primary]
    if champion:
        by_metric: dict[str, list[float]] = {}
        for key in champion:
            by_metric.setdefault(key.metric, []).append(metrics[str(key)])
        mean = {m: sum(v) / len(v) for m, v in by_metric.items()}
        label = f"champion v{metrics.get('champion_version', '?')}"
        rows.append(f"| {label} | {mean.get('bleu', 0):.2f} | {mean.get('chrf', 0):.2f} | {mean.get('chrf_pp', 0):.2f} |")
    return "\n".join(
        [
            f"## Review {registration['model_name']} version {registration['version']}",
            "",
            f"Macro averages on `{primary}`:",
            "",
            *rows,
            "",
            "### Gate",
            "",
            gate_table,
            "",
            f"Report: `{report_path}` (also in the evaluate run's artifacts under `report/`). MLflow: {tracking_uri}, "
            f"register run `{registration['run_id']}`.",
            "",
            f"Decide here, or run `python -m tools.approve {registration['version']} --decision approve|reject --by NAME [--note TEXT]`.",
        ]
    )
