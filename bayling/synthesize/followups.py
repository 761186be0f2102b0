"""The interactive-translation catalogue (BayLing 1): follow-up turns after a translation request.

Each task is a small named function of a TaskContext. It returns a Turn whose reply is derived from
the multi-parallel row (a reference translation or a checked deterministic edit of one), a Turn that
asks the teacher LLM for its reply, or Skipped with the reason. Nothing is invented.
"""

from __future__ import annotations

import random
import string
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import yaml

from bayling.config.synthesize import INTERACTIVE_TASKS
from bayling.core.languages import get_language
from bayling.core.prompts import INSTRUCTION_CODES, language_name
from bayling.core.records import CorpusRow


@cache
def phrasings() -> dict[str, Any]:
    """The wording of every user turn and derived reply, per instruction language (resources/phrasings.yaml)."""
    text = resources.files("bayling.synthesize.resources").joinpath("phrasings.yaml").read_text("utf-8")
    return yaml.safe_load(text)


def pick(instruction_language: str, key: str, rng: random.Random, **fields: str) -> str:
    return rng.choice(phrasings()[instruction_language][key]).format(**fields)


def phrase(instruction_language: str, group: str, key: str, **fields: str) -> str:
    return phrasings()[instruction_language][group][key].format(**fields)


@dataclass(frozen=True)
class TaskContext:
    row: CorpusRow
    src: str
    current: str  # the language of the translation the conversation is working on
    instruction_language: str  # "en" or "zh": which templates the user turns use
    rng: random.Random
    neighbours: Sequence[CorpusRow] = ()
    teacher_enabled: bool = False

    @property
    def texts(self) -> Mapping[str, str]:
        return self.row.texts

    def name(self, code: str) -> str:
        return language_name(code, self.instruction_language)

    @property
    def instruction_code(self) -> str:
        return INSTRUCTION_CODES[self.instruction_language]


@dataclass(frozen=True)
class Turn:
    task: str
    user: str
    assistant: str | None
    response_langs: tuple[str, ...]
    source_ids: tuple[str, ...] = ()
    new_current: str | None = None
    teacher_messages: tuple[tuple[str, str], ...] | None = None  # (role, content) pairs for the teacher
    checks: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Skipped:
    task: str
    reason: str


Result = Turn | Skipped


# ---------------------------------------------------------------- text units
def is_unsegmented(code: str) -> bool:
    """Written without spaces: lengths count characters, and "words" are character runs."""
    return get_language(code).written_without_spaces


def _strip_punct(word: str) -> str:
    return word.strip(string.punctuation + "«»“”„‘’¿¡…—–·،؟。，、；：？！「」『』（）")


def units(text: str, code: str) -> list[str]:
    """Words for spaced scripts; letters for scripts written without spaces."""
    if is_unsegmented(code):
        return [ch for ch in text if unicodedata.category(ch)[0] in ("L", "M")]
    return [w for w in (_strip_punct(t) for t in text.split()) if w]


def length_in_units(text: str, code: str) -> int:
    return len(units(text, code))


def content_words(text: str, code: str) -> list[str]:
    """Distinct words (or two-character chunks for unsegmented scripts) worth constraining on, in order."""
    seen: list[str] = []
    if is_unsegmented(code):
        run = ""
        for ch in text + " ":
            if unicodedata.category(ch)[0] in ("L", "M"):
                run += ch
                continue
            for i in range(0, len(run) - 1, 2):
                chunk = run[i : i + 2]
                if chunk not in seen:
                    seen.append(chunk)
            run = ""
        return seen
    for word in units(text, code):
        if sum(ch.isalpha() for ch in word) >= 4 and word not in seen:
            seen.append(word)
    return seen


# ---------------------------------------------------------------- deterministic corruptions
@dataclass(frozen=True)
class Corruption:
    text: str
    kind: str
    x: str
    y: str = ""


def corrupt(text: str, code: str, rng: random.Random) -> Corruption | None:
    """A single, explainable error planted in a correct translation (or None if the text is too short)."""
    digits = [i for i, ch in enumerate(text) if ch.isdigit()]
    kinds = ["swap", "drop", "duplicate"] + (["digit"] if digits else [])
    rng.shuffle(kinds)
    for kind in kinds:
        result = _apply(kind, text, code, rng, digits)
        if result is not None and result.text != text:
            return result
    return None


def _apply(kind: str, text: str, code: str, rng: random.Random, digits: list[int]) -> Corruption | None:
    if kind == "digit":
        i = rng.choice(digits)
        new = str((int(text[i]) + 1) % 10)
        start, end = i, i + 1
        while start > 0 and text[start - 1].isdigit():
            start -= 1
        while end < len(text) and text[end].isdigit():
            end += 1
        wrong = text[:i] + new + text[i + 1 :]
        return Corruption(wrong, "digit", wrong[start:end], text[start:end])
    if is_unsegmented(code):
        tokens = list(text)
        positions = [i for i, ch in enumerate(tokens) if unicodedata.category(ch)[0] == "L"]
        joiner = ""
    else:
        tokens = text.split(" ")
        positions = [i for i, w in enumerate(tokens) if _strip_punct(w)]
        joiner = " "
    if len(positions) < 3:
        return None
    if kind == "swap":
        pairs = [(a, b) for a, b in zip(positions, positions[1:]) if b == a + 1 and tokens[a] != tokens[b]]
        if not pairs:
            return None
        a, b = rng.choice(pairs)
        x, y = _strip_punct(tokens[a]), _strip_punct(tokens[b])
        tokens[a], tokens[b] = tokens[b], tokens[a]
        return Corruption(joiner.join(tokens), "swap", x, y)
    i = rng.choice(positions)
    word = _strip_punct(tokens[i])
    if kind == "drop":
        return Corruption(joiner.join(tokens[:i] + tokens[i + 1 :]), "drop", word)
    return Corruption(joiner.join(tokens[: i + 1] + [tokens[i]] + tokens[i + 1 :]), "duplicate", word)


def explain(corruption: Corruption, instruction_language: str) -> str:
    return phrase(instruction_language, "explanations", corruption.kind, x=corruption.x, y=corruption.y)


# ---------------------------------------------------------------- data-derived tasks
def pivot(ctx: TaskContext) -> Result:
    """Translate into a third language of the multi-parallel row; the reply is that language's reference."""
    others = [c for c in sorted(ctx.texts) if c not in (ctx.src, ctx.current)]
    if not others:
        return Skipped("pivot", "the row has no third language")
    third = ctx.rng.choice(others)
    user = pick(ctx.instruction_language, "pivot", ctx.rng, lang=ctx.name(third))
    return Turn("pivot", user, ctx.texts[third], (third,), new_current=third)


def back_translate(ctx: TaskContext) -> Result:
    """Translate the current translation back into the source language; the reply is the source itself."""
    user = pick(ctx.instruction_language, "back_translate", ctx.rng,
                tgt_lang=ctx.name(ctx.current), src_lang=ctx.name(ctx.src))
    return Turn("back_translate", user, ctx.texts[ctx.src], (ctx.src,))


def constrained(ctx: TaskContext) -> Result:
    """Lexically constrained revision: the constraint words are taken from the reference, which satisfies them."""
    reference = ctx.texts[ctx.current]
    candidates = content_words(reference, ctx.current)
    if not candidates:
        return Skipped("constrained", "no content words to constrain on")
    k = min(len(candidates), ctx.rng.randint(1, 3))
    chosen = sorted(ctx.rng.sample(candidates, k), key=candidates.index)
    separator = "、" if ctx.instruction_language == "zh" else ", "
    user = pick(ctx.instruction_language, "constrained", ctx.rng, words=separator.join(chosen))
    assert all(word in reference for word in chosen)
    return Turn("constrained", user, reference, (ctx.current,), checks={"must_include": tuple(chosen)})


def length_limit(ctx: TaskContext) -> Result:
    """A word (or character) limit the reference meets; the reply is the reference."""
    reference = ctx.texts[ctx.current]
    count = length_in_units(reference, ctx.current)
    if count == 0:
        return Skipped("length_limit", "the reference has no words")
    limit = count + ctx.rng.randint(0, 3)
    key = "length_limit_chars" if is_unsegmented(ctx.current) else "length_limit"
    user = pick(ctx.instruction_language, key, ctx.rng, n=str(limit))
    return Turn("length_limit", user, reference, (ctx.current,), checks={"max_units": limit})


def correct_draft(ctx: TaskContext) -> Result:
    """The user offers a draft with one planted error; the reply names the error and gives the reference."""
    reference = ctx.texts[ctx.current]
    corruption = corrupt(reference, ctx.current, ctx.rng)
    if corruption is None:
        return Skipped("correct_draft", "the reference is too short to plant an error")
    user = pick(ctx.instruction_language, "correct_draft", ctx.rng, draft=corruption.text)
    answer = pick(ctx.instruction_language, "correct_draft_answer", ctx.rng,
                  explanation=explain(corruption, ctx.instruction_language), answer=reference)
    return Turn("correct_draft", user, answer, (ctx.current, ctx.instruction_code), checks={"draft": corruption.text})


NEIGHBOUR_PROBES = 32


def _neighbours_with(ctx: TaskContext, *codes: str) -> list[CorpusRow]:
    """Other rows of the shard that have all `codes`, from a bounded random probe (shards can be large)."""
    pool = ctx.neighbours
    probe = pool if len(pool) <= NEIGHBOUR_PROBES else ctx.rng.sample(list(pool), NEIGHBOUR_PROBES)
    return [r for r in probe if r.id != ctx.row.id and all(c in r.texts for c in codes)]


def translate_list(ctx: TaskContext) -> Result:
    """Translate a numbered list of further sentences (from rows of the same split); replies are their references."""
    pool = _neighbours_with(ctx, ctx.src, ctx.current)
    if not pool:
        return Skipped("translate_list", "no other rows in this shard share the language pair")
    chosen = ctx.rng.sample(pool, min(len(pool), ctx.rng.randint(2, 3)))
    sentences = "\n".join(f"{i}. {r.texts[ctx.src]}" for i, r in enumerate(chosen, 1))
    answer = "\n".join(f"{i}. {r.texts[ctx.current]}" for i, r in enumerate(chosen, 1))
    user = pick(ctx.instruction_language, "translate_list", ctx.rng, tgt_lang=ctx.name(ctx.current), sentences=sentences)
    return Turn("translate_list", user, answer, (ctx.current,), source_ids=tuple(r.id for r in chosen))


def compare_candidates(ctx: TaskContext) -> Result:
    """Pick the better of two candidates: the reference and either a corrupted copy or another sentence's reference."""
    reference = ctx.texts[ctx.current]
    corruption = corrupt(reference, ctx.current, ctx.rng)
    others = _neighbours_with(ctx, ctx.current)
    source_ids: tuple[str, ...] = ()
    if corruption is not None and (not others or ctx.rng.random() < 0.5):
        worse_text, explanation = corruption.text, explain(corruption, ctx.instruction_language)
    elif others:
        other = ctx.rng.choice(others)
        worse_text, explanation = other.texts[ctx.current], None
        source_ids = (other.id,)
    else:
        return Skipped("compare_candidates", "no second candidate can be built")
    reference_first = ctx.rng.random() < 0.5
    a, b = (reference, worse_text) if reference_first else (worse_text, reference)
    better, worse = ("A", "B") if reference_first else ("B", "A")
    if explanation is None:
        explanation = phrase(ctx.instruction_language, "explanations", "other_sentence", worse=worse)
    user = pick(ctx.instruction_language, "compare_candidates", ctx.rng, tgt_lang=ctx.name(ctx.current), a=a, b=b)
    answer = pick(ctx.instruction_language, "compare_answer", ctx.rng, better=better, explanation=explanation)
    return Turn("compare_candidates", user, answer, (ctx.instruction_code,), source_ids=source_ids, checks={"better": better})


def multi_target(ctx: TaskContext) -> Result:
    """The sentence in two more languages at once; each line is that language's reference."""
    others = [c for c in sorted(ctx.texts) if c not in (ctx.src, ctx.current)]
    if len(others) < 2:
        return Skipped("multi_target", "the row has fewer than two further languages")
    chosen = sorted(ctx.rng.sample(others, 2))
    joiner = "和" if ctx.instruction_language == "zh" else " and "
    user = pick(ctx.instruction_language, "multi_target", ctx.rng, langs=joiner.join(ctx.name(c) for c in chosen))
    separator = "：" if ctx.instruction_language == "zh" else ": "
    answer = "\n".join(f"{ctx.name(c)}{separator}{ctx.texts[c]}" for c in chosen)
    return Turn("multi_target", user, answer, tuple(chosen))


def identify_language(ctx: TaskContext) -> Result:
    """Name the language of the original sentence, from the row's own language label."""
    user = pick(ctx.instruction_language, "identify_language", ctx.rng)
    answer = pick(ctx.instruction_language, "identify_language_answer", ctx.rng, lang=ctx.name(ctx.src))
    return Turn("identify_language", user, answer, (ctx.instruction_code,))


# ---------------------------------------------------------------- teacher tasks
def _teacher_off(task: str) -> Skipped:
    return Skipped(task, "needs the teacher LLM (synthesize.teacher.enabled is false)")


def _source_and_translation(ctx: TaskContext) -> str:
    """The context every teacher request opens with: the original and the current translation."""
    return (f"Source ({get_language(ctx.src).name}): {ctx.texts[ctx.src]}\n"
            f"Translation ({get_language(ctx.current).name}): {ctx.texts[ctx.current]}\n")


def change_register(ctx: TaskContext) -> Result:
    """Rewrite the translation more formally or informally: only the teacher can write that."""
    if not ctx.teacher_enabled:
        return _teacher_off("change_register")
    style = ctx.rng.choice(["formal", "informal"])
    user = pick(ctx.instruction_language, "change_register", ctx.rng, style=phrase(ctx.instruction_language, "styles", style))
    request = (
        ("system", "You are a professional translator. Reply with the requested text only."),
        (
            "user",
            _source_and_translation(ctx) + f"Rewrite the translation in a more {style} register, in {get_language(ctx.current).name}.",
        ),
    )
    return Turn("change_register", user, None, (ctx.current,), teacher_messages=request, checks={"script": ctx.current})


def explain_word_choice(ctx: TaskContext) -> Result:
    """Explain why a word of the translation was chosen: the teacher explains, in the instruction language."""
    if not ctx.teacher_enabled:
        return _teacher_off("explain_word_choice")
    words = content_words(ctx.texts[ctx.current], ctx.current)
    if not words:
        return Skipped("explain_word_choice", "no content words to ask about")
    word = ctx.rng.choice(words)
    user = pick(ctx.instruction_language, "explain_word_choice", ctx.rng, word=word)
    reply_in = get_language(ctx.instruction_code).name
    request = (
        ("system", "You are a professional translator who explains translation choices briefly."),
        ("user", _source_and_translation(ctx) + f'In two or three sentences of {reply_in}, explain why the translation uses "{word}".'),
    )
    return Turn(
        "explain_word_choice", user, None, (ctx.instruction_code,), teacher_messages=request, checks={"script": ctx.instruction_code}
    )


def shorten(ctx: TaskContext) -> Result:
    """A genuinely shorter translation under a word limit: written by the teacher, then checked."""
    if not ctx.teacher_enabled:
        return _teacher_off("shorten")
    count = length_in_units(ctx.texts[ctx.current], ctx.current)
    if is_unsegmented(ctx.current) or count < 6:
        return Skipped("shorten", "too short (or unsegmented) to shorten by words")
    limit = max(3, (count * 2) // 3)
    user = pick(ctx.instruction_language, "shorten", ctx.rng, n=str(limit))
    request = (
        ("system", "You are a professional translator. Reply with the requested text only."),
        ("user", _source_and_translation(ctx) + f"Shorten the translation to at most {limit} words, keeping its meaning."),
    )
    return Turn("shorten", user, None, (ctx.current,), teacher_messages=request, checks={"max_units": limit, "script": ctx.current})


TASKS: dict[str, Callable[[TaskContext], Result]] = {
    "pivot": pivot,
    "back_translate": back_translate,
    "constrained": constrained,
    "length_limit": length_limit,
    "correct_draft": correct_draft,
    "translate_list": translate_list,
    "compare_candidates": compare_candidates,
    "multi_target": multi_target,
    "identify_language": identify_language,
    "change_register": change_register,
    "explain_word_choice": explain_word_choice,
    "shorten": shorten,
}
assert tuple(TASKS) == INTERACTIVE_TASKS, "bayling.config.synthesize must name exactly the tasks defined here"
