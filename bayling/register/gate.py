"""The promotion gate: rules from params.yaml applied to the evaluation report, each with its numbers.

A candidate may be proposed only if every rule passes: minimum scores, required test sets, no significant
drop against the champion beyond the allowed number of points in any direction, and no significant drop
below the base model on the headline test set, in any direction or on the average. The base rule fails
when the base model's scores or the paired test are missing; the champion rule fails when a champion
exists and a direction was not compared with it.

A drop is significant when three things hold, all from evaluate's paired bootstrap: the two-sided p-value
is below the rule's alpha, the 95% bootstrap interval of the change lies below zero (95% whatever alpha
is: it guards against the p-value's failure at small n, and does not replace it), and the direction has
enough segments for a distribution-free paired test to reach alpha. sacreBLEU's p-value alone is not
enough at small n: it said 0.001 for two segments whose interval was [-1.65, +0.43]. With n segments
the exact sign test cannot go below 2 * 0.5**n, so it takes the smallest n with 2 * 0.5**n < alpha
(6 at alpha 0.05) before any difference can show.

The base rule tests every direction of the headline and the average at once, so its p-values are
Holm-adjusted over that family: with six directions tested separately at 0.05, a fine-tuned model no
different from its base would be refused about one time in seven. The champion rule, with its allowance
in points, keeps the p-value of each direction as it is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from bayling.config.register import DropRule, GateParams, UnderstandingDropRule
from bayling.core.metric_keys import ScoreKey, score_keys, segments_key


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
    if policy.max_drop_vs_base is not None:
        results.extend(_vs_base(metrics, policy.max_drop_vs_base))
    if policy.understanding is not None:
        results.extend(understanding_drops(metrics, policy.understanding, champion))
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
        if p_value is None:
            results.append(RuleResult("max_drop_vs_champion", target, round(change, 4), -drop.points, True, "no significance test"))
            continue
        significant, detail = significant_drop(metrics, key, "delta_vs_champion", p_value, drop.alpha)
        failed = change < -drop.points and significant
        results.append(RuleResult("max_drop_vs_champion", target, round(change, 4), -drop.points, not failed, detail))
    if champion is None and not any(r.rule == "max_drop_vs_champion" for r in results):
        results.append(RuleResult("max_drop_vs_champion", drop.metric, None, -drop.points, True, "no champion to compare with"))
    return results


def _vs_base(metrics: dict[str, Any], rule: DropRule) -> list[RuleResult]:
    """The base-model rule on the headline test set: every direction, then the macro average."""
    primary = metrics.get("primary_test_set")
    keys = [k for k in score_keys(metrics) if k.test_set == primary and k.model == "final" and k.metric == rule.metric]
    keys.sort(key=lambda k: (k.is_average, k.direction))
    if not keys or not any(str(k.with_model("base")) in metrics for k in keys):
        detail = "the base model was not evaluated (evaluate.evaluate_base)" if keys else "no scores on the headline test set"
        return [RuleResult("max_drop_vs_base", f"{primary}.{rule.metric}", None, -rule.points, False, detail)]
    p_values = [metrics.get(str(k.with_model("p_vs_base"))) for k in keys]
    adjusted = holm([p for p in p_values if p is not None])
    results = []
    for key, p_value in zip(keys, p_values):
        target = f"{key.test_set}.{key.direction}.{rule.metric}"
        base_score = metrics.get(str(key.with_model("base")))
        if base_score is None or p_value is None:
            missing = "no base score" if base_score is None else "no paired test against the base model (run evaluate again)"
            results.append(RuleResult("max_drop_vs_base", target, None, -rule.points, False, missing))
            continue
        change = metrics[str(key)] - base_score
        significant, detail = significant_drop(metrics, key, "delta", p_value, rule.alpha, adjusted.pop(0), len(keys))
        failed = change < -rule.points and significant
        results.append(RuleResult("max_drop_vs_base", target, round(change, 4), -rule.points, not failed, detail))
    return results


def understanding_drops(metrics: dict[str, Any], rule: UnderstandingDropRule, champion: str | None) -> list[RuleResult]:
    """Each named task's languages and average against the base model and the champion: a drop fails when the paired
    test's p-value, Holm-adjusted over the task's languages and average, is below alpha. A task, a base model or a
    champion comparison that is missing fails too; no champion at all passes, and says so."""
    results = []
    for task in rule.tasks:
        languages = sorted({k.split(".")[1] for k in metrics if k.startswith(f"{task}.") and k.endswith(f".final.{rule.metric}")},
                           key=lambda lang: (lang == "avg", lang))
        if not languages:
            results.append(RuleResult("understanding", f"{task}.{rule.metric}", None, None, False,
                                      "not in reports/eval/metrics.json (evaluate.understanding or evaluate.xcopa)"))
            continue
        for against, change_part, p_part in (("base", "delta", "p_vs_base"), ("champion", "delta_vs_champion", "p_vs_champion")):
            if against not in rule.against:
                continue
            rule_name = f"understanding_vs_{against}"
            if against == "champion" and champion is None:
                results.append(RuleResult(rule_name, f"{task}.{rule.metric}", None, None, True, "no champion to compare with"))
                continue
            if against == "champion" and str(metrics.get("champion_version")) != champion:
                results.append(RuleResult(rule_name, f"{task}.{rule.metric}", None, None, False,
                                          f"not compared with champion v{champion}"))
                continue
            p_values = [metrics.get(f"{task}.{lang}.{p_part}.{rule.metric}") for lang in languages]
            if any(p is None for p in p_values):
                detail = "the base model was not evaluated (evaluate.evaluate_base)" if against == "base" else "no paired test"
                results.append(RuleResult(rule_name, f"{task}.{rule.metric}", None, None, False, detail))
                continue
            adjusted = holm([float(p) for p in p_values])  # type: ignore[arg-type]
            for lang, p_value, p_adjusted in zip(languages, p_values, adjusted):
                change = metrics.get(f"{task}.{lang}.{change_part}.{rule.metric}")
                items = metrics.get(f"{task}.{lang}.items")
                failed = change is not None and change < 0 and p_adjusted < rule.alpha
                detail = f"p={p_value} (Holm-adjusted over {len(languages)} tests: {p_adjusted:.4g}), {items} items"
                results.append(RuleResult(rule_name, f"{task}.{lang}.{rule.metric}", change, 0.0, not failed, detail))
    return results


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: rejecting those below alpha keeps the chance of any
    false rejection in the family at most alpha, whatever the dependence between the tests."""
    order = sorted(range(len(p_values)), key=p_values.__getitem__)
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def segments_needed(alpha: float) -> int:
    """The fewest segments with which a distribution-free paired test can reach p < alpha: the exact sign test's
    smallest two-sided p-value with n segments is 2 * 0.5**n."""
    n = 1
    while 2 * 0.5**n >= alpha:
        n += 1
    return n


def significant_drop(metrics: dict[str, Any], key: ScoreKey, change: str, p_value: float, alpha: float,
                     adjusted: float | None = None, family: int = 1) -> tuple[bool, str]:
    """Whether the paired bootstrap shows the change keyed `change` (`delta`, `delta_vs_champion`) at `key`'s test set
    and direction to be a real drop, and the evidence in words. `adjusted` is the p-value adjusted over a family of
    `family` tests, which then decides instead of `p_value`. Missing interval or segment counts (an evaluation from
    before they were recorded) leave the p-value to decide alone."""
    low, high = metrics.get(str(key.with_model(f"{change}_low"))), metrics.get(str(key.with_model(f"{change}_high")))
    segments = metrics.get(segments_key(key.test_set, key.direction))
    decisive = p_value if adjusted is None else adjusted
    detail = f"p={p_value}" + (f" (Holm-adjusted over {family} tests: {adjusted:.4g})" if adjusted is not None and family > 1 else "")
    detail += f", 95% interval [{low:+.2f}, {high:+.2f}]" if low is not None and high is not None else ""
    if isinstance(segments, int) and segments < segments_needed(alpha):
        return False, f"{detail}; {segments} segments: a paired test needs {segments_needed(alpha)} to reach p < {alpha}"
    if high is not None and high >= 0 and decisive < alpha:
        # p says the change is real; the interval says whether it is a gain (above 0) or too unsure to call a drop
        return False, f"{detail}; " + ("a gain: the 95% interval lies above 0" if low is not None and low > 0
                                       else "the 95% interval includes 0")
    return decisive < alpha and (high is None or high < 0), detail


def passed(results: list[RuleResult]) -> bool:
    return all(r.passed for r in results)


def as_records(results: list[RuleResult]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]


TAG_LIMIT = 5000  # characters of a model version tag value on the MLflow servers this project meets


def summary_tag(results: list[RuleResult], limit: int = TAG_LIMIT) -> str:
    """The gate's outcome as a model version tag: passed or not, how many rules, and as many failed rule targets as fit,
    always valid JSON within `limit`. Every rule with its numbers is in the register run's gate.json."""
    import json

    failed = [f"{r.rule} {r.target}" for r in results if not r.passed]
    summary: dict[str, Any] = {"passed": passed(results), "rules": len(results), "failed_count": len(failed), "failed": [],
                               "every_rule": "gate.json in the register run"}
    for target in failed:
        summary["failed"].append(target)
        if len(json.dumps(summary, ensure_ascii=False)) > limit:
            summary["failed"].pop()
            break
    return json.dumps(summary, ensure_ascii=False)


def markdown_table(results: list[RuleResult]) -> str:
    lines = ["| rule | target | value | threshold | result |", "|---|---|---:|---:|---|"]
    for r in results:
        value = "" if r.value is None else f"{r.value:.4g}"
        threshold = "" if r.threshold is None else f"{r.threshold:.4g}"
        verdict = "pass" if r.passed else "**FAIL**"
        lines.append(f"| {r.rule} | {r.target} | {value} | {threshold} | {verdict}{' (' + r.detail + ')' if r.detail else ''} |")
    return "\n".join(lines)
