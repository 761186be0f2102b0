"""BayLing 2's mix: conversations grouped by task family and language group (zh, en, cross-lingual,
other), kept with seeded per-conversation draws so the training split reaches the requested shares.

The shares are of supervised tokens by default (synthesize.mix.unit), the tokens the loss is computed on:
a general chat teaches tens of times the tokens of a translated sentence, so shares of conversations say
little about what training sees (BayLing 2's 43.2 / 26.2 / 30.6 % counted instructions). The planning is
the same in either unit: only what a conversation weighs changes.

Within each mix cell, languages are re-balanced by temperature, as multilingual pre-training does
(XLM-R, mT5): language l gets a share proportional to n_l^(1/T) of the cell's rows, so T = 1 keeps the
data's own shares and T = inf gives every language the same. A language short of its share is
up-sampled by repetition, never more than `max_repeat` times its rows; what the cap leaves over goes
to the other languages. A conversation's language is the one its replies are taught in (the target).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bayling.core.composition import Ratios, cell_label, requested_shares
from bayling.core.jsonl import dumps_line
from bayling.core.prompts import INSTRUCTION_CODES
from bayling.core.seeding import coin


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


@dataclass(frozen=True)
class MixPlan:
    keep_probability: dict[tuple[str, str], float]  # expected copies by (family, group) of the data (> 1: repeated)
    requested: dict[str, float]  # cell label -> requested share
    available: dict[str, float]  # cell label -> candidates


def temperature_factors(rows: dict[str, int], temperature: float, max_repeat: float) -> dict[str, float]:
    """Rows used / rows available per language, for shares proportional to n^(1/T) at an unchanged total.

    Water-filling: a language whose share would need more than `max_repeat` copies of its rows is held at
    the cap, and the rest of the total is shared again among the others by their weights.
    """
    present = {lang: n for lang, n in rows.items() if n > 0}
    if not present or temperature == 1:
        return {lang: 1.0 for lang in rows}
    weight = {lang: 1.0 if math.isinf(temperature) else n ** (1.0 / temperature) for lang, n in present.items()}
    budget, open_langs, target = float(sum(present.values())), set(present), {}
    while open_langs:
        norm = sum(weight[lang] for lang in open_langs)
        share = {lang: budget * weight[lang] / norm for lang in open_langs}
        capped = {lang for lang in open_langs if share[lang] > max_repeat * present[lang]}
        if not capped:
            target.update(share)
            break
        for lang in capped:
            target[lang] = max_repeat * present[lang]
            budget -= target[lang]
        open_langs -= capped
    return {lang: (target[lang] / present[lang] if lang in present else 1.0) for lang in rows}


def copies(seed: int, conversation_id: str, factor: float) -> int:
    """How many times a chat is written for an expected `factor` copies: the whole part, plus one more by a
    deterministic coin on the fraction (so a factor at most 1 is exactly the keep draw)."""
    whole = int(factor)
    return whole + int(keep_draw(seed, conversation_id, factor - whole)) if factor - whole > 0 else whole


def cell_counts(available: dict[tuple[str, str], float], ratios: Ratios) -> dict[str, float]:
    by_cell: dict[str, float] = {}
    for (family, group), n in available.items():
        label = cell_label(family, group, ratios)
        by_cell[label] = by_cell.get(label, 0) + n
    return by_cell


def plan_mix(available: dict[tuple[str, str], float], ratios: Ratios, mode: str, max_repeat: float = 1.0) -> MixPlan:
    """Expected copies per (family, group) that reach the requested shares as far as the data allows.

    In 'downsample' mode the requested shares are renormalised over the cells that have data, and the
    largest total that every such cell can supply is kept; data in cells with no requested share is
    dropped. 'resample' does the same but lets a cell supply up to `max_repeat` copies of its rows, so a
    small cell (a few hundred general chats) does not shrink the others to its size. In 'report' mode
    everything is kept and only the comparison is reported.
    """
    requested = requested_shares(ratios)
    by_cell = cell_counts(available, ratios)
    if mode == "report":
        return MixPlan({key: 1.0 for key in available}, requested, by_cell)
    feasible = {c: requested[c] for c in requested if by_cell.get(c, 0) > 0}
    if not feasible:
        return MixPlan({key: 0.0 for key in available}, requested, by_cell)
    norm = sum(feasible.values())
    most = max_repeat if mode == "resample" else 1.0
    total_for = {c: by_cell[c] / (share / norm) for c, share in feasible.items()}  # the total each cell supports unrepeated
    # repetition serves the balance only: the cell richest for its share is never repeated
    supply = min(most * min(total_for.values()), max(total_for.values()))
    probability = {c: min(most, supply * share / norm / by_cell[c]) for c, share in feasible.items()}
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


Slot = tuple[str, str, str]  # (family, group, language) of a conversation


def mix_slot(meta: dict[str, str]) -> Slot:
    return meta["family"], meta["group"], meta["tgt_lang"]


Weights = dict[Path, list[int]]  # per shard file, the amount each of its lines weighs in the mix (in file order)


def mix_counts(paths: Sequence[Path], weights: Weights | None = None) -> tuple[Counter, Counter]:
    """Conversations per (family, group, language) in shard files, counted in one pass without keeping them, and
    the sum of their `weights` (supervised tokens; without weights, each conversation weighs 1)."""
    counts: Counter = Counter()
    weighed: Counter = Counter()
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for i, line in enumerate(handle):
                slot = mix_slot(json.loads(line)["meta"])
                counts[slot] += 1
                weighed[slot] += weights[path][i] if weights is not None else 1
    return counts, weighed


def shard_weights(paths: Sequence[Path], measure: Callable[[list[list[dict[str, str]]]], list[int]]) -> Weights:
    """`measure` applied to every shard file's conversations (their messages), one file at a time."""
    weights: Weights = {}
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            weights[path] = measure([json.loads(line)["messages"] for line in handle])
    return weights


@dataclass(frozen=True)
class LanguagePlan:
    factors: dict[Slot, float]  # expected copies per conversation from temperature re-balancing
    balanced: dict[tuple[str, str], float]  # expected rows per (family, group) after it


def plan_languages(available: dict[Slot, int], ratios: Ratios, temperature: float, max_repeat: float) -> LanguagePlan:
    """Temperature re-balancing of languages inside each mix cell (cells not requested are left alone)."""
    by_cell: dict[str, Counter] = {}
    for (family, group, lang), n in available.items():
        by_cell.setdefault(cell_label(family, group, ratios), Counter())[lang] += n
    cell_factors = {cell: temperature_factors(dict(rows), temperature, max_repeat) for cell, rows in by_cell.items()}
    factors: dict[Slot, float] = {}
    balanced: dict[tuple[str, str], float] = {}
    for (family, group, lang), n in available.items():
        factor = cell_factors[cell_label(family, group, ratios)][lang]
        factors[(family, group, lang)] = factor
        balanced[(family, group)] = balanced.get((family, group), 0.0) + n * factor
    return LanguagePlan(factors, balanced)


def combined_factors(language: dict[Slot, float], cell: dict[tuple[str, str], float], mode: str, max_repeat: float) -> dict[Slot, float]:
    """Expected copies per (family, group, language): the language's temperature factor times its cell's, held to
    what the mode allows. 'report' keeps every row once, 'downsample' never repeats, 'resample' repeats a row at
    most `max_repeat` times (a scarce language in a scarce cell would otherwise get the product of both caps)."""
    if mode == "report":
        return {slot: 1.0 for slot in language}
    most = max_repeat if mode == "resample" else 1.0
    return {slot: min(most, factor * cell.get(slot[:2], 0.0)) for slot, factor in language.items()}


REPEAT_MARK = "#"  # a repeat's id is `{id}#{k}`; no chat's own id may contain it (general.read_general)


def merge_shards(paths: Sequence[Path], out: IO[str], factors: dict[Slot, float] | None, seed: int,
                 unique: Counter | None = None, weights: Weights | None = None, kept_weight: Counter | None = None) -> Counter:
    """Concatenate shard files in order into `out`, each chat as many times as its deterministic mix draw
    says (none, once, or repeated). A repeat's id gets a "#k" suffix and its meta `repeat: k`, so later
    stages can tell a repeat from a new conversation."""
    kept: Counter = Counter()
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for i, line in enumerate(handle):
                conversation = json.loads(line)
                slot = mix_slot(conversation["meta"])
                count = 1 if factors is None else copies(seed, conversation["id"], factors.get(slot, 0.0))
                if kept_weight is not None and weights is not None:
                    kept_weight[slot] += count * weights[path][i]
                for k in range(count):
                    if k == 0:
                        out.write(line)
                    else:
                        meta = {**conversation["meta"], "repeat": k + 1}
                        out.write(dumps_line({**conversation, "id": f"{conversation['id']}{REPEAT_MARK}{k + 1}", "meta": meta}))
                kept[slot] += count
                if unique is not None and count:
                    unique[slot] += 1
    return kept


def language_report(available: dict[Slot, int], kept: dict[Slot, int]) -> dict[str, dict[str, float]]:
    """Per language (over all cells): rows available, rows used and the repetition factor (used / available)."""
    rows: Counter = Counter()
    used: Counter = Counter()
    for (_, _, lang), n in available.items():
        rows[lang] += n
    for (_, _, lang), n in kept.items():
        used[lang] += n
    return {lang: {"available": rows[lang], "used": used[lang], "repeat": round(used[lang] / rows[lang], 3) if rows[lang] else 0.0}
            for lang in sorted(rows)}
