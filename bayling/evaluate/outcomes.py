"""Per-document outcomes of understanding tasks (lm-eval's or the native XCOPA engine's) and the paired tests on
them: the fine-tuned model against its base and against the champion, on the same documents.

The test is McNemar's, exact: of the documents the two models score differently, how many went each way, against a
fair coin (two-sided). For a metric that is not right-or-wrong per document (an F1, a BLEU per item) it is a paired
sign-flip permutation test of the mean difference. Keys, beside the scores {name}.{lang}.{model}.{metric}:
{name}.{lang}.delta.{metric} and .p_vs_base.{metric}; {name}.{lang}.champion.{metric}, .delta_vs_champion.{metric}
and .p_vs_champion.{metric}; {name}.{lang}.items. `avg` pools every language's documents.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from math import comb
from pathlib import Path
from typing import Any

from bayling.core.jsonl import write_jsonl
from bayling.core.metric_keys import AVERAGE


@dataclass(frozen=True)
class ItemOutcome:
    """One document of one task: what each metric gave it (acc: 1.0 right, 0.0 wrong), and lm-eval's hashes of the
    document and the prompt, which tell whether two models were scored on the same item."""

    task: str  # the lm-eval (leaf) task
    doc_id: int
    doc_hash: str
    prompt_hash: str
    scores: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task, "doc_id": self.doc_id, "doc_hash": self.doc_hash, "prompt_hash": self.prompt_hash,
                "scores": self.scores}

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> ItemOutcome:
        return cls(str(row["task"]), int(row["doc_id"]), str(row["doc_hash"]), str(row["prompt_hash"]),
                   {str(k): float(v) for k, v in row["scores"].items()})


Outcomes = dict[str, dict[str, list[ItemOutcome]]]  # entry name -> language -> one per document


@dataclass
class UnderstandingRun:
    metrics: dict[str, float] = field(default_factory=dict)  # {name}.{lang}.{label}.{metric} and {name}.avg.{label}.*
    outcomes: Outcomes = field(default_factory=dict)
    seconds: float = 0.0
    items: int = 0


def merge(runs: list[UnderstandingRun]) -> UnderstandingRun:
    out = UnderstandingRun()
    for run in runs:
        out.metrics.update(run.metrics)
        out.outcomes.update(run.outcomes)
        out.seconds += run.seconds
        out.items += run.items
    return out


def same_documents(ours: list[ItemOutcome], theirs: list[ItemOutcome]) -> bool:
    """Both lists hold the same documents, posed the same way, in the same order."""
    return len(ours) == len(theirs) and all(
        (a.task, a.doc_id, a.doc_hash, a.prompt_hash) == (b.task, b.doc_id, b.doc_hash, b.prompt_hash) for a, b in zip(ours, theirs))


def mcnemar_p(ours: list[float], theirs: list[float]) -> float:
    """Exact two-sided McNemar test: the discordant documents against Binomial(n, 1/2)."""
    better = sum(1 for a, b in zip(ours, theirs) if a > b)
    worse = sum(1 for a, b in zip(ours, theirs) if a < b)
    n = better + worse
    if n == 0:
        return 1.0
    tail = sum(comb(n, i) for i in range(min(better, worse) + 1))
    return min(1.0, 2 * tail / 2**n)


def sign_flip_p(ours: list[float], theirs: list[float], samples: int, seed: int) -> float:
    """Paired permutation test of the mean difference, each document's sign flipped at random (two-sided)."""
    diffs = [a - b for a, b in zip(ours, theirs)]
    if not diffs or not any(diffs):
        return 1.0
    observed = abs(sum(diffs))
    rng = random.Random(seed)
    extreme = sum(1 for _ in range(samples) if abs(sum(d if rng.random() < 0.5 else -d for d in diffs)) >= observed - 1e-12)
    return (1 + extreme) / (1 + samples)


def paired_p(ours: list[float], theirs: list[float], samples: int = 1000, seed: int = 0) -> float:
    if all(v in (0.0, 1.0) for v in (*ours, *theirs)):
        return mcnemar_p(ours, theirs)
    return sign_flip_p(ours, theirs, samples, seed)


@dataclass(frozen=True)
class Comparator:
    score: str | None  # the comparator's own score label (None: keyed by its own run, as the base model's)
    change: str
    p_value: str


BASE = Comparator(None, "delta", "p_vs_base")
CHAMPION = Comparator("champion", "delta_vs_champion", "p_vs_champion")


def compare(ours: Outcomes, theirs: Outcomes, comparator: Comparator, samples: int = 1000, seed: int = 0) -> dict[str, float]:
    """The paired test of `ours` against `theirs` per entry, language and metric, and on each entry's pooled documents.
    Both must hold the same documents (same_documents); a language missing from `theirs` is skipped."""
    out: dict[str, float] = {}
    for name, by_lang in ours.items():
        pooled: dict[str, tuple[list[float], list[float]]] = {}
        for lang, mine in by_lang.items():
            other = theirs.get(name, {}).get(lang)
            if other is None or not mine:
                continue
            if not same_documents(mine, other):
                raise ValueError(f"{name}.{lang}: the two models were scored on different documents")
            out[f"{name}.{lang}.items"] = len(mine)
            for metric in mine[0].scores:
                a = [o.scores[metric] for o in mine]
                b = [o.scores[metric] for o in other]
                pooled.setdefault(metric, ([], []))[0].extend(a)
                pooled[metric][1].extend(b)
                out.update(_keys(name, lang, metric, a, b, comparator, samples, seed))
        for metric, (a, b) in pooled.items():
            out.update(_keys(name, AVERAGE, metric, a, b, comparator, samples, seed))
        if pooled:
            out[f"{name}.{AVERAGE}.items"] = len(next(iter(pooled.values()))[0])
    return out


def _keys(name: str, lang: str, metric: str, ours: list[float], theirs: list[float], comparator: Comparator,
          samples: int, seed: int) -> dict[str, float]:
    mine, other = sum(ours) / len(ours), sum(theirs) / len(theirs)
    keys = {f"{name}.{lang}.{comparator.change}.{metric}": round(mine - other, 4),
            f"{name}.{lang}.{comparator.p_value}.{metric}": round(paired_p(ours, theirs, samples, seed), 4)}
    if comparator.score:
        keys[f"{name}.{lang}.{comparator.score}.{metric}"] = round(other, 4)
    return keys


def outcome_files(outcomes: Outcomes, folder: Path) -> None:
    """{folder}/{name}/{lang}.jsonl, one outcome per document (kept with the predictions, so a champion's travel with it)."""
    for name, by_lang in outcomes.items():
        for lang, rows in by_lang.items():
            write_jsonl(folder / name / f"{lang}.jsonl", rows)


def read_outcomes(folder: Path, name: str, lang: str) -> list[ItemOutcome] | None:
    """A model's stored outcomes for one entry and language, or None when there are none or they cannot be read."""
    path = folder / name / f"{lang}.jsonl"
    if not path.is_file():
        return None
    try:
        return [ItemOutcome.from_json(json.loads(line)) for line in path.read_text("utf-8").splitlines() if line.strip()]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None


def moved(metrics: dict[str, Any], names: list[str], alpha: float = 0.05) -> list[dict[str, Any]]:
    """The entries and languages where the fine-tuned model moved significantly (p < alpha) against the base model or
    the champion, for the review: one row per entry, language, metric and comparator."""
    rows = []
    for key, value in sorted(metrics.items()):
        parts = key.split(".")
        if len(parts) != 4 or parts[0] not in names or parts[2] not in (BASE.p_value, CHAMPION.p_value):
            continue
        name, lang, test, metric = parts
        comparator = BASE if test == BASE.p_value else CHAMPION
        change = metrics.get(f"{name}.{lang}.{comparator.change}.{metric}")
        if not isinstance(value, (int, float)) or value >= alpha or not change:
            continue
        rows.append({"task": name, "language": lang, "metric": metric, "against": "base" if comparator is BASE else "champion",
                     "final": metrics.get(f"{name}.{lang}.final.{metric}"), "change": change, "p": value,
                     "direction": "up" if change > 0 else "down", "items": metrics.get(f"{name}.{lang}.items")})
    return rows


def rows(metrics: dict[str, Any], names: list[str], models: list[str]) -> list[dict[str, Any]]:
    """One row per understanding entry and language (then `avg`), each model's scores side by side, and the paired
    tests' p-values: per_language.csv's rows for understanding, after the translation rows."""
    out = []
    for name in names:
        prefix = f"{name}."
        keys = [k.split(".") for k in metrics if k.startswith(prefix) and len(k.split(".")) == 4]
        langs = sorted({p[1] for p in keys if p[1] != AVERAGE}) + ([AVERAGE] if any(p[1] == AVERAGE for p in keys) else [])
        metric_names = sorted({p[3] for p in keys if p[2] == "final"})
        for lang in langs:
            row: dict[str, Any] = {"test_set": name, "direction": lang, "src_lang": "", "tgt_lang": lang}
            for model in [*models, BASE.change, BASE.p_value, CHAMPION.change, CHAMPION.p_value]:
                for metric in metric_names:
                    row[f"{model}_{metric}"] = metrics.get(f"{name}.{lang}.{model}.{metric}")
            out.append(row)
    return out
