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


def evaluate_gate(metrics: dict[str, Any], policy: GateParams, champion: str | None = None) -> list[RuleResult]:
    """Every rule's result for this evaluation; `champion` is the version holding the champion alias now.

    The drop rule never passes for want of a comparison: when a champion exists, every direction the
    candidate was scored on must have been compared with it (evaluate regenerates the champion's
    predictions when its stored ones cover other segments), and against this champion.
    """
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
    if drop is None:
        return results
    evaluated_against = str(metrics["champion_version"]) if "champion_version" in metrics else None
    if champion is not None and evaluated_against != champion:
        detail = f"evaluated against version {evaluated_against}" if evaluated_against else "no comparison with the champion was made"
        results.append(RuleResult("max_drop_vs_champion", f"champion v{champion}", None, -drop.points, False, detail))
        return results
    finals = [k for k in sorted(score_keys(metrics), key=str) if k.model == "final" and k.metric == drop.metric and not k.is_average]
    for key in finals:
        target = f"{key.test_set}.{key.direction}.{drop.metric}"
        champion_score = metrics.get(str(key.with_model("champion")))
        if champion_score is None:
            if champion is not None:
                detail = f"not compared with champion v{champion}"
                results.append(RuleResult("max_drop_vs_champion", target, None, -drop.points, False, detail))
            continue
        p_value = metrics.get(str(key.with_model("p_vs_champion")))
        change = metrics[str(key)] - champion_score
        significant = p_value is not None and p_value < drop.alpha
        failed = change < -drop.points and significant
        results.append(RuleResult("max_drop_vs_champion", target, round(change, 4), -drop.points, not failed,
                                  f"p={p_value}" if p_value is not None else "no significance test"))
    if champion is None and not any(r.rule == "max_drop_vs_champion" for r in results):
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
