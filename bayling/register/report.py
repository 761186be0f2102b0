"""reports/register.json: what the register stage made of this evaluation, for the run summary and the flow."""

from __future__ import annotations

from typing import Any

from bayling.register import gate
from bayling.register.registry import Registration


def registration_report(registration: Registration, results: list[gate.RuleResult], verdict: dict[str, Any], model_sha256: str,
                        tracking_uri: str, mix: dict[str, Any] | None = None) -> dict[str, Any]:
    """reports/register.json: the version, its alias (none when the gate failed), and the gate's rules, with the
    ones that failed named; and the training mix three ways (register.training_mix)."""
    return {
        "mix": mix,
        "model_name": registration.model_name,
        "version": registration.version,
        "alias": registration.alias,
        "run_id": registration.run_id,
        "created": registration.created,
        "model_uri": registration.model_uri,
        "model_sha256": model_sha256,
        "tracking_uri": tracking_uri,
        "gate": {"passed": verdict["passed"], "this_evaluation_passed": gate.passed(results), "evaluations": verdict["evaluations"],
                 "failed_evaluations": verdict.get("failed_evaluations", 0),
                 "failed": [f"{r.rule} {r.target}" for r in results if not r.passed],
                 "rules": gate.as_records(results)},
    }
