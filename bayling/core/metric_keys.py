"""The flat keys of reports/eval/metrics.json, built and read in one place.

A score is `{test_set}.{direction}.{model}.{metric}`: test set names have no dots, a direction is
`src-tgt` in FLORES-200 codes or `avg` for the macro average, the model is a label such as `final`,
`base`, `delta`, `champion` or `p_vs_champion`, and the metric is bleu, chrf, chrf_pp (or comet).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

METRICS = ("bleu", "chrf", "chrf_pp")
AVERAGE = "avg"
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
        if len(parts) != 4 or not (parts[1] == AVERAGE or DIRECTION.match(parts[1])):
            return None
        return cls(*parts)

    def with_model(self, model: str) -> ScoreKey:
        return ScoreKey(self.test_set, self.direction, model, self.metric)

    @property
    def is_average(self) -> bool:
        return self.direction == AVERAGE


def score_key(test_set: str, direction: str, model: str, metric: str) -> str:
    return str(ScoreKey(test_set, direction, model, metric))


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
