"""BayLing 2's mix: conversations grouped by task family and language group (zh, en, cross-lingual,
other), kept with seeded per-conversation draws so the training split reaches the requested shares."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bayling.core.prompts import INSTRUCTION_CODES
from bayling.core.seeding import coin

Ratios = dict[str, dict[str, float]]  # family (or "any") -> language group -> weight


def language_group(instruction_language: str, response_langs: Iterable[str]) -> str:
    """BayLing 2's grouping: 'cross' when any reply is not in the instruction's language, else that language.

    Translation and interactive-translation chats are cross-lingual by construction (the user turn
    carries text in another language) and are always grouped 'cross'; this decides general chats.
    """
    instruction_code = INSTRUCTION_CODES.get(instruction_language, instruction_language)
    replies = set(response_langs)
    if replies - {instruction_code}:
        return "cross"
    return {"eng_Latn": "en", "zho_Hans": "zh", "zho_Hant": "zh"}.get(instruction_code, "other")


def mix_cell(family: str, group: str, ratios: Ratios) -> tuple[str, str] | None:
    if group in ratios.get(family, {}):
        return family, group
    if group in ratios.get("any", {}):
        return "any", group
    return None


def cell_label(family: str, group: str, ratios: Ratios) -> str:
    """The mix cell that data of (family, group) counts towards, as 'family.group'."""
    cell = mix_cell(family, group, ratios)
    return f"{cell[0]}.{cell[1]}" if cell else f"{family}.{group} (not requested)"


@dataclass(frozen=True)
class MixPlan:
    keep_probability: dict[tuple[str, str], float]  # by (family, group) of the data
    requested: dict[str, float]  # cell label -> requested share
    available: dict[str, int]  # cell label -> candidates


def plan_mix(available: dict[tuple[str, str], int], ratios: Ratios, mode: str) -> MixPlan:
    """Keep probabilities per (family, group) that reach the requested shares as far as the data allows.

    In 'downsample' mode the requested shares are renormalised over the cells that have data, and the
    largest total that every such cell can supply is kept; data in cells with no requested share is
    dropped. In 'report' mode everything is kept and only the comparison is reported.
    """
    total = sum(w for groups in ratios.values() for w in groups.values())
    requested = {f"{f}.{g}": w / total for f, groups in ratios.items() for g, w in groups.items() if w > 0}
    by_cell: dict[str, int] = {}
    for (family, group), n in available.items():
        label = cell_label(family, group, ratios)
        by_cell[label] = by_cell.get(label, 0) + n
    if mode == "report":
        return MixPlan({key: 1.0 for key in available}, requested, by_cell)
    feasible = {c: requested[c] for c in requested if by_cell.get(c, 0) > 0}
    if not feasible:
        return MixPlan({key: 0.0 for key in available}, requested, by_cell)
    norm = sum(feasible.values())
    supply = min(by_cell[c] / (share / norm) for c, share in feasible.items())
    probability = {c: min(1.0, supply * share / norm / by_cell[c]) for c, share in feasible.items()}
    keep = {(family, group): probability.get(cell_label(family, group, ratios), 0.0) for (family, group) in available}
    return MixPlan(keep, requested, by_cell)


def keep_draw(seed: int, conversation_id: str, probability: float) -> bool:
    """A deterministic coin: the same conversation, seed and probability always give the same answer."""
    return coin(seed, probability, "mix", conversation_id)


def achieved_mix(kept: dict[tuple[str, str], int], ratios: Ratios) -> dict[str, float]:
    total = sum(kept.values())
    shares: dict[str, float] = {}
    for (family, group), n in kept.items():
        label = cell_label(family, group, ratios)
        shares[label] = shares.get(label, 0.0) + (n / total if total else 0.0)
    return {k: round(v, 4) for k, v in sorted(shares.items())}


def mix_counts(paths: Sequence[Path]) -> Counter:
    """Conversations per (family, group) in shard files, counted without keeping them."""
    counts: Counter = Counter()
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                meta = json.loads(line)["meta"]
                counts[(meta["family"], meta["group"])] += 1
    return counts


def merge_shards(paths: Sequence[Path], out: IO[str], keep: dict[tuple[str, str], float] | None, seed: int) -> Counter:
    """Concatenate shard files in order into `out`, keeping each chat by its deterministic mix draw."""
    kept: Counter = Counter()
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                conversation = json.loads(line)
                meta = conversation["meta"]
                cell = (meta["family"], meta["group"])
                if keep is not None and not keep_draw(seed, conversation["id"], keep.get(cell, 0.0)):
                    continue
                out.write(line)
                kept[cell] += 1
    return kept
