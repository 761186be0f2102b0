"""Scores into the flat report: per-direction and macro-average keys, base-to-final deltas, and one row
per test set and direction for the CSV, the charts and the HTML report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bayling.core.metric_keys import AVERAGE, METRICS, ScoreKey, directions, score_key
from bayling.evaluate.metrics import Scores, macro_average


def flat_scores(test_set: str, model: str, scores: dict[str, Scores]) -> dict[str, float]:
    """`{test_set}.{direction}.{model}.{metric}` and `{test_set}.avg.{model}.{metric}` keys."""
    flat = {score_key(test_set, d, model, m): round(getattr(s, m), 4) for d, s in scores.items() for m in METRICS}
    flat.update({score_key(test_set, AVERAGE, model, m): round(v, 4) for m, v in macro_average(list(scores.values())).items()})
    return flat


def deltas(flat: dict[str, Any], test_set: str, before: str = "base", after: str = "final") -> dict[str, float]:
    """`after` minus `before` for every score both have, under the model label `delta`."""
    out = {}
    for key in map(ScoreKey.parse, list(flat)):
        if key is None or key.test_set != test_set or key.model != after:
            continue
        other = str(key.with_model(before))
        if other in flat:
            out[str(key.with_model("delta"))] = round(flat[str(key)] - flat[other], 4)
    return out


def per_language_rows(metrics: dict[str, Any], test_sets: Sequence[str], models: Sequence[str]) -> list[dict[str, Any]]:
    """One row per test set and direction, with each model's BLEU, chrF and chrF++ side by side."""
    rows = []
    for test_set in test_sets:
        for direction in directions(metrics, test_set):
            src, tgt = direction.split("-")
            row: dict[str, Any] = {"test_set": test_set, "direction": direction, "src_lang": src, "tgt_lang": tgt}
            for model in models:
                for m in METRICS:
                    row[f"{model}_{m}"] = metrics.get(score_key(test_set, direction, model, m))
            rows.append(row)
    return rows
