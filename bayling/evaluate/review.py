"""What a reviewer needs to decide on a candidate, per direction of every translation test set: its
corpus scores beside the champion's and the base model's (with the paired-bootstrap p-values against
the champion), and the segments that moved most, read side by side.

Corpus scores say whether a candidate is better; they do not say what it now gets wrong. The segments
are ranked by sentence-level chrF++ (sacreBLEU's chrF with word_order=2, against every reference) of
the candidate minus a comparator: the champion's output where a champion comparison exists, else the
base model's, and the review says which. A segment whose score did not move is neither regressed nor
improved. Ties are broken by segment id, and every score is rounded before ranking, so the same inputs
give the same reports/eval/review.json byte for byte.

The functions here are pure; the evaluate stage writes the result, the HTML report and the approval
pause render it, and register records its tables in MLflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bayling.core.metric_keys import METRICS, score_key, source_language_key
from bayling.evaluate.outcomes import moved
from bayling.evaluate.test_sets import TestItem

TOP_K = 5
DIGITS = 4
RANKING = "sentence chrF++ (sacreBLEU chrF, word_order=2) of the candidate minus the comparator"
Hypotheses = dict[str, dict[str, list[str]]]  # test set -> direction -> one output per item, in item order


@dataclass(frozen=True)
class SegmentChange:
    """One segment as the candidate and the comparator translated it, with each one's sentence chrF++."""

    id: str
    source: str
    reference: str
    comparator_output: str
    candidate_output: str
    comparator_chrf_pp: float
    candidate_chrf_pp: float
    delta: float  # candidate minus comparator


@dataclass(frozen=True)
class DirectionReview:
    test_set: str
    direction: str
    segments: int
    comparator: str | None  # "champion", "base", or None when neither model's outputs are at hand
    comparator_label: str  # as the report and the pause show it: "vs champion v3", "vs base (no champion)"
    scores: dict[str, dict[str, float] | None]  # candidate / champion / base -> {metric: corpus score}
    p_vs_champion: dict[str, float] | None  # paired bootstrap, per metric
    p_vs_base: dict[str, float] | None  # paired bootstrap of the candidate against its base model, per metric
    interval_vs_base: dict[str, list[float]] | None  # 95% bootstrap interval of (candidate minus base), per metric
    regressed: list[SegmentChange]
    improved: list[SegmentChange]
    # candidate / base -> the share of its outputs in the source language (bayling/evaluate/target_language.py)
    in_source_language: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def sentence_chrf_pp(hypothesis: str, references: Sequence[str]) -> float:
    """Sentence-level chrF++ of one output against its references, rounded."""
    from sacrebleu.metrics import CHRF

    return round(CHRF(word_order=2).sentence_score(hypothesis, list(references)).score, DIGITS)


def rank_segments(items: Sequence[TestItem], candidate: Sequence[str], comparator: Sequence[str],
                  k: int = TOP_K) -> tuple[list[SegmentChange], list[SegmentChange]]:
    """The k most regressed (most negative change first) and the k most improved (most positive first)
    segments; a segment with no change is in neither list, and equal changes go by segment id."""
    if not len(items) == len(candidate) == len(comparator):
        raise ValueError(f"{len(items)} items, {len(candidate)} candidate outputs, {len(comparator)} comparator outputs")
    changes = []
    for item, ours, theirs in zip(items, candidate, comparator):
        our_score, their_score = sentence_chrf_pp(ours, item.references), sentence_chrf_pp(theirs, item.references)
        changes.append(SegmentChange(item.id, item.source, item.reference, theirs, ours, their_score, our_score,
                                     round(our_score - their_score, DIGITS)))
    regressed = sorted((c for c in changes if c.delta < 0), key=lambda c: (c.delta, c.id))
    improved = sorted((c for c in changes if c.delta > 0), key=lambda c: (-c.delta, c.id))
    return regressed[:k], improved[:k]


def _model_scores(metrics: dict[str, Any], test_set: str, direction: str, model: str) -> dict[str, float] | None:
    found = {m: metrics[score_key(test_set, direction, model, m)] for m in METRICS if score_key(test_set, direction, model, m) in metrics}
    return found or None


def _intervals(metrics: dict[str, Any], test_set: str, direction: str) -> dict[str, list[float]] | None:
    low, high = _model_scores(metrics, test_set, direction, "delta_low"), _model_scores(metrics, test_set, direction, "delta_high")
    if not low or not high:
        return None
    return {m: [low[m], high[m]] for m in METRICS if m in low and m in high}


def review_direction(test_set: str, direction: str, items: Sequence[TestItem], candidate: Sequence[str],
                     champion: Sequence[str] | None, base: Sequence[str] | None, metrics: dict[str, Any],
                     k: int = TOP_K, absence: str = "no champion") -> DirectionReview:
    """One direction's review: the champion is the comparator when its outputs are given, else the base model.
    `absence` says why there are no champion outputs, in the label the reviewer reads."""
    if champion is not None:
        comparator, label, theirs = "champion", f"vs champion v{metrics.get('champion_version', '?')}", champion
    elif base is not None:
        comparator, label, theirs = "base", f"vs base ({absence})", base
    else:
        comparator, label, theirs = None, f"no comparator ({absence}, base not evaluated)", None
    regressed, improved = rank_segments(items, candidate, theirs, k) if theirs is not None else ([], [])
    return DirectionReview(
        test_set=test_set,
        direction=direction,
        segments=len(items),
        comparator=comparator,
        comparator_label=label,
        scores={label: _model_scores(metrics, test_set, direction, model)
                for label, model in (("candidate", "final"), ("champion", "champion"), ("base", "base"))},
        p_vs_champion=_model_scores(metrics, test_set, direction, "p_vs_champion"),
        p_vs_base=_model_scores(metrics, test_set, direction, "p_vs_base"),
        interval_vs_base=_intervals(metrics, test_set, direction),
        regressed=regressed,
        improved=improved,
        in_source_language={label: metrics[key] for label, model in (("candidate", "final"), ("base", "base"))
                            if (key := source_language_key(test_set, direction, model)) in metrics},
    )


def build_review(test_sets: dict[str, dict[str, list[TestItem]]], candidate: Hypotheses, champion: Hypotheses | None,
                 base: Hypotheses | None, metrics: dict[str, Any], k: int = TOP_K,
                 champion_absence: str = "no champion", understanding: Sequence[str] = ()) -> dict[str, Any]:
    """The whole review as reports/eval/review.json holds it, test sets and directions in sorted order, and the
    understanding tasks and languages that moved (a paired test at p < 0.05 against base or champion).

    `champion` and `base` may lack a test set or direction (or be None): that direction then falls back
    to the next comparator.
    """
    directions = []
    for name in sorted(test_sets):
        for direction in sorted(test_sets[name]):
            items = test_sets[name][direction]
            theirs = (champion or {}).get(name, {}).get(direction)
            before = (base or {}).get(name, {}).get(direction)
            directions.append(review_direction(name, direction, items, candidate[name][direction], theirs, before, metrics, k,
                                               champion_absence if champion is None else "champion has no outputs here").to_json())
    return {
        "k": k,
        "ranking": RANKING,
        "champion_version": metrics.get("champion_version"),
        "directions": directions,
        "understanding_moved": moved(metrics, list(understanding)),
    }


def write_review(path: Path, review: dict[str, Any]) -> None:
    from bayling.core.jsonl import write_json

    write_json(path, review)
