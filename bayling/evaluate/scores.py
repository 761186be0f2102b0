"""Scores into the flat report: per-direction and macro-average keys, base-to-final deltas, and one row
per test set and direction for the CSV, the charts and the HTML report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bayling.core.metric_keys import AVERAGE, METRICS, TERM_METRICS, ScoreKey, directions, score_key, score_keys
from bayling.evaluate.metrics import Scores, macro_average
from bayling.evaluate.terms import TermUsage


def flat_scores(test_set: str, model: str, scores: dict[str, Scores]) -> dict[str, float]:
    """`{test_set}.{direction}.{model}.{metric}` and `{test_set}.avg.{model}.{metric}` keys."""
    flat = {score_key(test_set, d, model, m): round(getattr(s, m), 4) for d, s in scores.items() for m in METRICS}
    flat.update({score_key(test_set, AVERAGE, model, m): round(v, 4) for m, v in macro_average(list(scores.values())).items()})
    return flat


def term_usage_scores(test_set: str, model: str, usage: dict[str, TermUsage]) -> dict[str, float]:
    """A constrained set's `{test_set}.{direction}.{model}.term_usage` (pooled) and `.term_usage_items` (mean of the
    items' shares), and their unweighted mean over its directions under `avg`; nothing for a set without terms."""
    if not usage:
        return {}
    values = {d: {"term_usage": u.total, "term_usage_items": u.item_mean} for d, u in usage.items()}
    values[AVERAGE] = {m: sum(v[m] for v in values.values()) / len(values) for m in TERM_METRICS}
    return {score_key(test_set, d, model, m): round(v, 4) for d, by_metric in values.items() for m, v in by_metric.items()}


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
    """One row per test set and direction, with each model's BLEU, chrF and chrF++ side by side; when a lexically
    constrained set is among them, every row also has each model's term usage columns (empty outside such sets), so
    that the rows share one set of columns."""
    with_terms = any(k.metric in TERM_METRICS and k.test_set in test_sets for k in score_keys(metrics))
    shown = (*METRICS, *TERM_METRICS) if with_terms else METRICS
    rows = []
    for test_set in test_sets:
        for direction in directions(metrics, test_set):
            src, tgt = direction.split("-")
            row: dict[str, Any] = {"test_set": test_set, "direction": direction, "src_lang": src, "tgt_lang": tgt}
            for model in models:
                for m in shown:
                    row[f"{model}_{m}"] = metrics.get(score_key(test_set, direction, model, m))
            rows.append(row)
    return rows
