"""BayLing 2 translation instructions: single-turn requests for every language pair of a corpus row, in
both directions, each with its instruction language and phrasing drawn per conversation."""

from __future__ import annotations

import random
from collections.abc import Iterable
from itertools import permutations

from bayling.core.prompts import INSTRUCTION_CODES, translation_prompt
from bayling.core.records import Conversation, CorpusRow
from bayling.core.seeding import row_rng


def directions_for(languages: Iterable[str], allowed: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """Every ordered pair of the row's languages, optionally restricted to `allowed` 'src-tgt' strings."""
    pairs = list(permutations(sorted(languages), 2))
    if allowed is None:
        return pairs
    wanted = set(allowed)
    return [(s, t) for s, t in pairs if f"{s}-{t}" in wanted]


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
    row: CorpusRow,
    *,
    instruction_language: str | dict[str, float] = "en",
    system_prompt: str | None = None,
    allowed_directions: Iterable[str] | None = None,
    seed: int = 0,
) -> list[Conversation]:
    """Single-turn translation instructions in both directions for every language pair of a corpus row.

    With a weights mapping for `instruction_language`, each conversation draws its instruction
    language and one of that language's phrasings; a plain string keeps BayLing's canonical prompt.
    """
    from bayling.synthesize.followups import phrasings

    texts = row.texts
    out = []
    for src, tgt in directions_for(texts, allowed_directions):
        if isinstance(instruction_language, str):
            lang, template = instruction_language, None
        else:
            rng = row_rng(seed, row.id, f"translate:{src}-{tgt}")
            lang, _ = draw_instruction_language(instruction_language, src, rng)
            template = rng.choice(phrasings()[lang]["translate"])
        messages = [] if system_prompt is None else [{"role": "system", "content": system_prompt}]
        messages += [
            {"role": "user", "content": translation_prompt(texts[src], tgt, lang, template)},
            {"role": "assistant", "content": texts[tgt]},
        ]
        out.append(Conversation(
            id=f"{row.id}/{src}-{tgt}", messages=messages, task="translate", family="translation", group="cross",
            instruction_language=lang, src_lang=src, tgt_lang=tgt, turn_tasks=["translate"], source_ids=[row.id],
        ))
    return out
