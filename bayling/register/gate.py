"""The promotion gate: rules from params.yaml applied to the evaluation report, each with its numbers.

A candidate may be proposed only if every rule passes: minimum scores, required test sets, and no
significant drop against the champion beyond the allowed number of points in any direction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from bayling.config.register import GateParams
from bayling.core.metric_keys import score_keys


@dataclass(frozen=True)
class RuleResult:
    rule: str
    target: str
    value: float | None
    threshold: float | None
    passed: bool
    detail: str = ""


def evaluate_gate(metrics: dict[str, Any], policy: GateParams) -> list[RuleResult]:
    results: list[RuleResult] = []
    for test_set in policy.required_test_sets:
        present = any(key.startswith(f"{test_set}.") for key in metrics)
        results.append(
            RuleResult("required_test_set", test_set, None, None, present, "" if present else "not in reports/eval/metrics.json")
        )
    for key, minimum in sorted(policy.min_scores.items()):
        value = metrics.get(key)
        ok = isinstance(value, (int, float)) and value >= minimum
        results.append(RuleResult("min_score", key, value, minimum, ok, "" if value is not None else "metric missing"))
    drop = policy.max_drop_vs_champion
    if drop is not None:
        compared = False
        for key in sorted(score_keys(metrics), key=str):
            if key.model != "champion" or key.metric != drop.metric or key.is_average:
                continue
            compared = True
            champion = metrics[str(key)]
            test_set, direction = key.test_set, key.direction
            candidate = metrics.get(str(key.with_model("final")))
            p_value = metrics.get(str(key.with_model("p_vs_champion")))
            change = None if candidate is None else candidate - champion
            significant = p_value is not None and p_value < drop.alpha
            failed = change is not None and change < -drop.points and significant
            results.append(
                RuleResult(
                    "max_drop_vs_champion",
                    f"{test_set}.{direction}.{drop.metric}",
                    None if change is None else round(change, 4),
                    -drop.points,
                    not failed,
                    f"p={p_value}" if p_value is not None else "no significance test",
                )
            )
        if not compared:
            results.append(RuleResult("max_drop_vs_champion", drop.metric, None, -drop.points, True, "no champion to compare with"))
    return results


def passed(results: list[RuleResult]) -> bool:
    return all(r.passed for r in results)


def as_records(results: list[RuleResult]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]


def markdown_table(results: list[RuleResult]) -> str:
    lines = ["| rule | target | value | threshold | result |", "|---|---|---:|---:|---|"]
    for r in results:
        value = "" if r.value is None else f"{r.value:.4g}"
        threshold = "" if r.threshold is None else f"{r.threshold:.4g}"
        verdict = "pass" if r.passed else "**FAIL**"
        lines.append(f"| {r.rule} | {r.target} | {value} | {threshold} | {verdict}{' (' + r.detail + ')' if r.detail else ''} |")
    return "\n".join(lines)
