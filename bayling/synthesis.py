"""Instruction synthesis from the parallel corpus: BayLing's translation instructions and a leak-free split."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import permutations
from typing import Any, Literal

import numpy as np

from bayling.prompts import INSTRUCTION_CODES, translation_prompt

Split = Literal["train", "heldout"]

def directions_for(languages: Iterable[str], allowed: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """Every ordered pair of the row's languages, optionally restricted to `allowed` 'src-tgt' strings."""
    pairs = list(permutations(sorted(languages), 2))
    if allowed is None:
        return pairs
    wanted = set(allowed)
    return [(s, t) for s, t in pairs if f"{s}-{t}" in wanted]


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


def row_rng(seed: int, row_id: str, salt: str = "") -> random.Random:
    """A generator that depends only on the seed and the row, so sharding never changes a row's draws."""
    return random.Random(hashlib.sha256(f"{seed}\x00{salt}\x00{row_id}".encode()).digest())


def draw_instruction_language(weights: dict[str, float], src: str, rng: random.Random) -> tuple[str, bool]:
    """'en' or 'zh' by the params weights; 'source' uses the source language's templates when there are any.

    Returns the language and whether a 'source' draw had to fall back to English.
    """
    names = sorted(weights)
    choice = rng.choices(names, weights=[weights[n] for n in names])[0]
    if choice != "source":
        return choice, False
    by_code = {code: lang for lang, code in INSTRUCTION_CODES.items()}
    if src in by_code:
        return by_code[src], False
    return "en", True


def translation_conversations(
    row: dict[str, Any],
    *,
    instruction_language: str | dict[str, float] = "en",
    system_prompt: str | None = None,
    allowed_directions: Iterable[str] | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Single-turn translation instructions in both directions for every language pair of a corpus row.

    With a weights mapping for `instruction_language`, each conversation draws its instruction
    language and one of that language's phrasings; a plain string keeps BayLing's canonical prompt.
    """
    from bayling.tasks import templates

    texts: dict[str, str] = row["texts"]
    out = []
    for src, tgt in directions_for(texts, allowed_directions):
        if isinstance(instruction_language, str):
            lang, template = instruction_language, None
        else:
            rng = row_rng(seed, row["id"], f"translate:{src}-{tgt}")
            lang, _ = draw_instruction_language(instruction_language, src, rng)
            template = rng.choice(templates()[lang]["translate"])
        messages = [] if system_prompt is None else [{"role": "system", "content": system_prompt}]
        messages += [
            {"role": "user", "content": translation_prompt(texts[src], tgt, lang, template)},
            {"role": "assistant", "content": texts[tgt]},
        ]
        out.append(
            {
                "id": f"{row['id']}/{src}-{tgt}",
                "messages": messages,
                "meta": {
                    "task": "translate",
                    "family": "translation",
                    "group": "cross",
                    "instruction_language": lang,
                    "turn_tasks": ["translate"],
                    "src_lang": src,
                    "tgt_lang": tgt,
                    "source_ids": [row["id"]],
                },
            }
        )
    return out


@dataclass
class InteractiveOutcome:
    conversation: dict[str, Any] | None
    skipped: list[tuple[str, str]]  # (task, reason) of every follow-up that could not be produced
    teacher_turn: Any | None = None  # a Turn whose reply the teacher must write (always the last turn)
    fallback_instruction_language: bool = False


def interactive_conversation(
    row: dict[str, Any],
    *,
    seed: int,
    index: int,
    instruction_languages: dict[str, float],
    task_weights: dict[str, float],
    max_followups: int,
    neighbours: Sequence[dict[str, Any]] = (),
    allowed_directions: Iterable[str] | None = None,
    system_prompt: str | None = None,
    teacher_enabled: bool = False,
) -> InteractiveOutcome:
    """A BayLing-1 interactive-translation conversation: a translation request, then follow-up turns.

    Follow-ups are drawn from the task catalogue by weight without repetition; a task that cannot
    produce a derivable (or teacher-written) reply is skipped and reported, and the next is tried.
    """
    from bayling.tasks import TASKS, TaskContext, Turn, pick

    rng = row_rng(seed, row["id"], f"interactive:{index}")
    directions = directions_for(row["texts"], allowed_directions)
    if not directions:
        return InteractiveOutcome(None, [("interactive", "no allowed direction in this row")])
    src, tgt = rng.choice(directions)
    lang, fell_back = draw_instruction_language(instruction_languages, src, rng)
    first_user = translation_prompt(row["texts"][src], tgt, lang, pick(lang, "translate", rng, src="{src}", tgt_lang="{tgt_lang}"))
    messages = [] if system_prompt is None else [{"role": "system", "content": system_prompt}]
    messages += [{"role": "user", "content": first_user}, {"role": "assistant", "content": row["texts"][tgt]}]
    turn_tasks, source_ids = ["translate"], [row["id"]]
    remaining = [t for t, w in sorted(task_weights.items()) if w > 0 and t in TASKS]
    wanted = rng.randint(1, max_followups)
    current, skipped, teacher_turn = tgt, [], None
    while remaining and len(turn_tasks) - 1 < wanted and teacher_turn is None:
        name = rng.choices(remaining, weights=[task_weights[t] for t in remaining])[0]
        remaining.remove(name)
        ctx = TaskContext(row, src, current, lang, rng, neighbours, teacher_enabled)
        result = TASKS[name](ctx)
        if not isinstance(result, Turn):
            skipped.append((result.task, result.reason))
            continue
        messages.append({"role": "user", "content": result.user})
        if result.assistant is None:
            teacher_turn = result
        else:
            messages.append({"role": "assistant", "content": result.assistant})
        turn_tasks.append(result.task)
        source_ids.extend(i for i in result.source_ids if i not in source_ids)
        current = result.new_current or current
    conversation = {
        "id": f"{row['id']}/interactive-{index}",
        "messages": messages,
        "meta": {
            "task": "interactive",
            "family": "interactive",
            "group": "cross",
            "instruction_language": lang,
            "turn_tasks": turn_tasks,
            "src_lang": src,
            "tgt_lang": tgt,
            "source_ids": source_ids,
        },
    }
    return InteractiveOutcome(conversation, skipped, teacher_turn, fell_back)


# ---------------------------------------------------------------- mix
PAPER_MIX = {"any": {"zh": 0.432, "en": 0.262, "cross": 0.306}}  # BayLing 2's 3.2M-instruction mix


def mix_cell(family: str, group: str, ratios: dict[str, dict[str, float]]) -> tuple[str, str] | None:
    if group in ratios.get(family, {}):
        return family, group
    if group in ratios.get("any", {}):
        return "any", group
    return None


@dataclass(frozen=True)
class MixPlan:
    keep_probability: dict[tuple[str, str], float]  # by (family, group) of the data
    requested: dict[str, float]  # cell label -> requested share
    available: dict[str, int]  # cell label -> candidates


def plan_mix(available: dict[tuple[str, str], int], ratios: dict[str, dict[str, float]], mode: str) -> MixPlan:
    """Keep probabilities per (family, group) that reach the requested shares as far as the data allows.

    In 'downsample' mode the requested shares are renormalised over the cells that have data, and the
    largest total that every such cell can supply is kept; data in cells with no requested share is
    dropped. In 'report' mode everything is kept and only the comparison is reported.
    """
    total = sum(w for groups in ratios.values() for w in groups.values())
    requested = {f"{f}.{g}": w / total for f, groups in ratios.items() for g, w in groups.items() if w > 0}
    by_cell: dict[str, int] = {}
    for (family, group), n in available.items():
        cell = mix_cell(family, group, ratios)
        label = f"{cell[0]}.{cell[1]}" if cell else f"{family}.{group} (not requested)"
        by_cell[label] = by_cell.get(label, 0) + n
    if mode == "report":
        return MixPlan({key: 1.0 for key in available}, requested, by_cell)
    feasible = {c: requested[c] for c in requested if by_cell.get(c, 0) > 0}
    if not feasible:
        return MixPlan({key: 0.0 for key in available}, requested, by_cell)
    norm = sum(feasible.values())
    supply = min(by_cell[c] / (share / norm) for c, share in feasible.items())
    probability = {c: min(1.0, supply * share / norm / by_cell[c]) for c, share in feasible.items()}
    keep = {}
    for (family, group) in available:
        cell = mix_cell(family, group, ratios)
        keep[(family, group)] = probability.get(f"{cell[0]}.{cell[1]}", 0.0) if cell else 0.0
    return MixPlan(keep, requested, by_cell)


def keep_draw(seed: int, conversation_id: str, probability: float) -> bool:
    """A deterministic coin: the same conversation, seed and probability always give the same answer."""
    if probability >= 1.0:
        return True
    if probability <= 0.0:
        return False
    value = int.from_bytes(hashlib.sha256(f"{seed}\x00mix\x00{conversation_id}".encode()).digest()[:8], "big")
    return value / 2**64 < probability


def _segment_digest(text: str) -> int:
    digest = hashlib.blake2b(" ".join(text.casefold().split()).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def split_flags(rows: Sequence[tuple[str, Sequence[str]]] | Iterator[tuple[str, Sequence[str]]], heldout_fraction: float, seed: int) -> np.ndarray:
    """heldout flag per row (in input order) such that no segment text is on both sides of the split.

    Rows sharing a segment are joined (union-find over sorted segment hashes); whole groups are taken
    into heldout in a seeded hash order of their first row id until the fraction is reached.
    """
    ids: list[str] = []
    digests: list[int] = []
    owners: list[int] = []
    for index, (row_id, texts) in enumerate(rows):
        ids.append(row_id)
        for text in texts:
            digests.append(_segment_digest(text))
            owners.append(index)
    n = len(ids)
    parent = np.arange(n, dtype=np.int64)

    def find(i: int) -> int:
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return root

    if digests:
        digest_array = np.asarray(digests, dtype=np.int64)
        owner_array = np.asarray(owners, dtype=np.int64)
        order = np.argsort(digest_array, kind="stable")
        sorted_digests, sorted_owners = digest_array[order], owner_array[order]
        same = np.nonzero(sorted_digests[1:] == sorted_digests[:-1])[0]
        for k in same:
            a, b = find(int(sorted_owners[k])), find(int(sorted_owners[k + 1]))
            if a != b:
                parent[max(a, b)] = min(a, b)
    roots = np.fromiter((find(i) for i in range(n)), dtype=np.int64, count=n)
    group_rows: dict[int, int] = Counter(roots.tolist())
    target = round(heldout_fraction * n)
    if len(group_rows) > 1:
        target = max(target, 1)
    order_key = {root: hashlib.sha256(f"{seed}\x00{ids[root]}".encode()).hexdigest() for root in group_rows}
    chosen: set[int] = set()
    taken = 0
    for root in sorted(group_rows, key=order_key.__getitem__):
        if taken >= target or len(group_rows) <= 1:
            break
        chosen.add(root)
        taken += group_rows[root]
    return np.fromiter((r in chosen for r in roots.tolist()), dtype=bool, count=n)


def split_rows(rows: list[dict[str, Any]], heldout_fraction: float, seed: int) -> dict[str, Split]:
    """split_flags for in-memory rows, as {row id: "train" | "heldout"}."""
    flags = split_flags(((r["id"], list(r["texts"].values())) for r in rows), heldout_fraction, seed)
    return {row["id"]: ("heldout" if flag else "train") for row, flag in zip(rows, flags)}


@dataclass
class SplitCounter:
    """Running counts for the data card, fed one conversation at a time."""

    conversations: int = 0
    turns: int = 0
    sources: set = None  # type: ignore[assignment]
    per_task: Counter = None  # type: ignore[assignment]
    per_family: Counter = None  # type: ignore[assignment]
    per_group: Counter = None  # type: ignore[assignment]
    per_pair: Counter = None  # type: ignore[assignment]
    per_instruction_language: Counter = None  # type: ignore[assignment]
    per_language: Counter = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.sources = set()
        for name in ("per_task", "per_family", "per_group", "per_pair", "per_instruction_language", "per_language"):
            setattr(self, name, Counter())

    def add(self, conversation: dict[str, Any]) -> None:
        meta = conversation["meta"]
        self.conversations += 1
        self.turns += sum(1 for m in conversation["messages"] if m["role"] == "assistant")
        self.sources.update(meta["source_ids"])
        self.per_task.update(meta.get("turn_tasks") or [meta["task"]])
        self.per_family[meta.get("family", meta["task"])] += 1
        self.per_group[meta.get("group", "cross")] += 1
        self.per_pair[f"{meta['src_lang']}-{meta['tgt_lang']}"] += 1
        self.per_instruction_language[meta.get("instruction_language", "en")] += 1
        self.per_language.update({meta["src_lang"], meta["tgt_lang"]})

    def as_dict(self) -> dict[str, Any]:
        return {
            "conversations": self.conversations,
            "assistant_turns": self.turns,
            "source_rows": len(self.sources),
            "per_task": dict(sorted(self.per_task.items())),
            "per_family": dict(sorted(self.per_family.items())),
            "per_group": dict(sorted(self.per_group.items())),
            "per_language_pair": dict(sorted(self.per_pair.items())),
            "per_instruction_language": dict(sorted(self.per_instruction_language.items())),
            "per_language": dict(sorted(self.per_language.items())),
        }


def build_card(splits: dict[str, Iterable[dict[str, Any]]], params: dict[str, Any], **sections: Any) -> dict[str, Any]:
    """Counts per split, task, family, language group, pair, instruction language and language,
    plus the settings that produced them and any extra report sections (mix, filters, ...)."""
    card: dict[str, Any] = {"params": params, "splits": {}}
    for name, conversations in splits.items():
        counter = SplitCounter()
        for conversation in conversations:
            counter.add(conversation)
        card["splits"][name] = counter.as_dict()
    card.update(sections)
    return card


def achieved_mix(kept: dict[tuple[str, str], int], ratios: dict[str, dict[str, float]]) -> dict[str, float]:
    total = sum(kept.values())
    shares: dict[str, float] = {}
    for (family, group), n in kept.items():
        cell = mix_cell(family, group, ratios)
        label = f"{cell[0]}.{cell[1]}" if cell else f"{family}.{group} (not requested)"
        shares[label] = shares.get(label, 0.0) + (n / total if total else 0.0)
    return {k: round(v, 4) for k, v in sorted(shares.items())}


def render_card_markdown(card: dict[str, Any]) -> str:
    """A human-readable data card: the same numbers as card.json, as tables."""

    def table(title: str, counts: dict[str, Any], header: str = "count") -> list[str]:
        if not counts:
            return []
        rows = [f"### {title}", "", f"| | {header} |", "|---|---:|"]
        rows += [f"| {key} | {value} |" for key, value in counts.items()]
        return rows + [""]

    lines = ["# Synthesized instruction data", ""]
    for split, info in card["splits"].items():
        lines += [f"## {split}: {info['conversations']} conversations, {info['assistant_turns']} assistant turns, "
                  f"{info['source_rows']} source rows", ""]
        lines += table("per task type (turns)", info["per_task"])
        lines += table("per family", info["per_family"])
        lines += table("per language group", info["per_group"])
        lines += table("per instruction language", info["per_instruction_language"])
        lines += table("per language pair", info["per_language_pair"])
    mix = card.get("mix")
    if mix:
        lines += [f"## Mix (mode: {mix['mode']})", "", "| cell | requested | achieved | available | kept |", "|---|---:|---:|---:|---:|"]
        for cell in sorted(set(mix["requested"]) | set(mix["achieved"]) | set(mix["available"])):
            lines.append(f"| {cell} | {mix['requested'].get(cell, 0):.1%} | {mix['achieved'].get(cell, 0):.1%} | "
                         f"{mix['available'].get(cell, 0)} | {mix['kept'].get(cell, 0)} |")
        lines.append("")
    for section in ("filters", "decontamination", "interactive", "general", "teacher"):
        if card.get(section):
            lines += [f"## {section}", "", "```json", json.dumps(card[section], indent=2, ensure_ascii=False), "```", ""]
    return "\n".join(lines)
