"""Choosing held-out translation test items and turning per-direction scores into before/after reports."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bayling.metrics import Scores, macro_average


@dataclass(frozen=True)
class TestItem:
    id: str
    direction: str
    src_lang: str
    tgt_lang: str
    prompt: list[dict[str, str]]
    source: str
    reference: str


def test_items(
    conversations: Iterable[dict[str, Any]], directions: Sequence[str] | None, per_direction: int, seed: int
) -> dict[str, list[TestItem]]:
    """Up to `per_direction` single-turn translation items per direction, chosen by a seeded hash order."""
    by_direction: dict[str, list[TestItem]] = defaultdict(list)
    for conv in conversations:
        meta = conv["meta"]
        if meta.get("task") != "translate" or conv["messages"][-1]["role"] != "assistant":
            continue
        direction = f"{meta['src_lang']}-{meta['tgt_lang']}"
        if directions is not None and direction not in directions:
            continue
        user = conv["messages"][-2]["content"]
        by_direction[direction].append(
            TestItem(
                id=conv["id"],
                direction=direction,
                src_lang=meta["src_lang"],
                tgt_lang=meta["tgt_lang"],
                prompt=conv["messages"][:-1],
                source=user,
                reference=conv["messages"][-1]["content"],
            )
        )

    def rank(item: TestItem) -> str:
        return hashlib.sha256(f"{seed}\x00{item.id}".encode()).hexdigest()

    return {d: sorted(items, key=rank)[:per_direction] for d, items in sorted(by_direction.items())}


def compare(before: dict[str, Scores] | None, after: dict[str, Scores]) -> dict[str, Any]:
    """metrics.json body: per-direction and macro-averaged scores for each model, and the change."""
    report: dict[str, Any] = {"final": _model_block(after)}
    if before is not None:
        report["base"] = _model_block(before)
        report["delta"] = {
            key: {m: round(report["final"][key][m] - report["base"][key][m], 4) for m in ("bleu", "chrf", "chrf_pp")}
            for key in report["final"]
            if key in report["base"]
        }
    return report


def _model_block(scores: dict[str, Scores]) -> dict[str, Any]:
    block: dict[str, Any] = {"avg": {k: round(v, 4) for k, v in macro_average(list(scores.values())).items()}}
    block.update({d: s.as_dict() for d, s in scores.items()})
    return block


def per_language_rows(before: dict[str, Scores] | None, after: dict[str, Scores]) -> list[dict[str, Any]]:
    rows = []
    for direction, score in after.items():
        src, tgt = direction.split("-")
        row: dict[str, Any] = {"direction": direction, "src_lang": src, "tgt_lang": tgt, "n": score.n}
        if before is not None and direction in before:
            row.update({f"base_{m}": getattr(before[direction], m) for m in ("bleu", "chrf", "chrf_pp")})
        row.update({f"final_{m}": getattr(score, m) for m in ("bleu", "chrf", "chrf_pp")})
        rows.append(row)
    return rows
