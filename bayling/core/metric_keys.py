"""The flat keys of reports/eval/metrics.json, built and read in one place.

A score is `{test_set}.{direction}.{model}.{metric}`: test set names have no dots, a direction is
`src-tgt` in FLORES-200 codes or `avg` for the macro average, the model is a label such as `final`,
`base`, `delta`, `champion` or `p_vs_champion`, and the metric is bleu, chrf, chrf_pp (or comet). A lexically
constrained set adds term_usage (all the terms found in the outputs over all the terms asked for) and
term_usage_items (the mean over items of each item's share), shares from 0 to 1 (bayling/evaluate/terms.py), for
`final`, `base` (with their `delta`) and `champion`, and for `avg` (no paired bootstrap: `p_vs_base` and the intervals are
sacreBLEU's metrics alone). An understanding task's keys (`xcopa.sw.final.acc`, `xcopa.avg.final.acc_norm`)
are not score keys, and a sacreBLEU signature is `signature.{test_set}.{target language}.{metric}`.

The paired bootstrap of the fine-tuned model against its base adds `delta_low` and `delta_high` (the 95%
interval of `delta`) and `p_vs_base`; against the champion, `delta_vs_champion` with `delta_vs_champion_low`
and `_high`, and `p_vs_champion`. Each is there per direction and for `avg`, the macro average.
`{test_set}.{direction}.segments` counts the items scored (for `avg`, the smallest direction's count).
`{test_set}.{direction}.{model}.in_source_language` is the share of a model's outputs that language identification
places in the direction's source language (bayling/evaluate/target_language.py): a flag, not a score.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

METRICS = ("bleu", "chrf", "chrf_pp")
TERM_METRICS = ("term_usage", "term_usage_items")  # lexically constrained sets: shares of the terms found, 0 to 1
# the metrics a score key may end in; a multiple-choice set's accuracy keys are not scores
SCORED = (*METRICS, "comet", *TERM_METRICS)
AVERAGE = "avg"
# the model part of a score key for what evaluate itself reports: a reference system may not take one of these names
MODEL_LABELS = ("final", "base", "delta", "delta_low", "delta_high", "p_vs_base", "champion", "p_vs_champion",
                "delta_vs_champion", "delta_vs_champion_low", "delta_vs_champion_high")
# the first part of metrics.json keys that are not a test set's: no test set may take one of these names
REPORT_NAMES = ("signature", "instructions", "primary_test_set", "champion_version", "champion_regenerated_segments", "notes")
DIRECTION = re.compile(r"^[a-z]{3}_[A-Za-z]{4}-[a-z]{3}_[A-Za-z]{4}$")


@dataclass(frozen=True)
class ScoreKey:
    test_set: str
    direction: str  # "src-tgt" or AVERAGE
    model: str
    metric: str

    def __str__(self) -> str:
        return f"{self.test_set}.{self.direction}.{self.model}.{self.metric}"

    @classmethod
    def parse(cls, key: str) -> ScoreKey | None:
        """The parts of a score key, or None for any other key (signatures, notes, xcopa, ...)."""
        parts = key.split(".")
        if len(parts) != 4 or not (parts[1] == AVERAGE or DIRECTION.match(parts[1])) or parts[3] not in SCORED \
                or parts[0] in REPORT_NAMES:
            return None
        return cls(*parts)

    def with_model(self, model: str) -> ScoreKey:
        return ScoreKey(self.test_set, self.direction, model, self.metric)

    @property
    def is_average(self) -> bool:
        return self.direction == AVERAGE


def score_key(test_set: str, direction: str, model: str, metric: str) -> str:
    return str(ScoreKey(test_set, direction, model, metric))


def segments_key(test_set: str, direction: str) -> str:
    """`{test_set}.{direction}.segments`: the items a direction was scored on (for `avg`, its smallest direction's)."""
    return f"{test_set}.{direction}.segments"


def source_language_key(test_set: str, direction: str, model: str) -> str:
    """`{test_set}.{direction}.{model}.in_source_language`: the share of outputs in the source language."""
    return f"{test_set}.{direction}.{model}.in_source_language"


def source_shares_text(before: float | None, after: float | None) -> str:
    """Two models' shares of outputs in the source language as the summary and the report show them: '45% → 58%'."""
    return " → ".join("–" if v is None else f"{100 * v:.0f}%" for v in (before, after))


def score_keys(metrics: Iterable[str]) -> list[ScoreKey]:
    return [k for k in map(ScoreKey.parse, metrics) if k is not None]


def averages(metrics: dict[str, Any], test_set: str, model: str) -> dict[str, float]:
    """The macro averages of one model on one test set, {metric: value}."""
    return {k.metric: metrics[str(k)] for k in score_keys(metrics)
            if k.test_set == test_set and k.model == model and k.is_average}


def directions(metrics: dict[str, Any], test_set: str, model: str | None = None) -> list[str]:
    """The directions a test set has scores for (optionally for one model), sorted."""
    return sorted({k.direction for k in score_keys(metrics)
                   if k.test_set == test_set and not k.is_average and (model is None or k.model == model)})


@dataclass(frozen=True)
class BaseChange:
    """The fine-tuned model against its base in one direction (or `avg`): both scores, the change with its
    95% bootstrap interval, and the paired bootstrap's two-sided p-value (None where evaluate did not test it)."""

    direction: str
    base: float
    final: float
    change: float
    low: float | None
    high: float | None
    p_value: float | None


def changes_vs_base(metrics: dict[str, Any], test_set: str, metric: str = "chrf_pp") -> list[BaseChange]:
    """Per direction, then the average: how fine-tuning moved `metric` on `test_set`; empty without base scores."""
    rows = []
    for direction in [*directions(metrics, test_set, "final"), AVERAGE]:
        def get(model: str, where: str = direction) -> Any:
            return metrics.get(score_key(test_set, where, model, metric))

        base, final = get("base"), get("final")
        if base is None or final is None:
            continue
        rows.append(BaseChange(direction, base, final, final - base, get("delta_low"), get("delta_high"), get("p_vs_base")))
    return rows
