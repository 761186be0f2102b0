"""BayLing 1 interactive translation: a translation request followed by follow-up turns drawn from the
catalogue in bayling.synthesize.followups (revise, constrain, shorten, pivot, compare, ...)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bayling.core.prompts import translation_prompt
from bayling.core.records import Conversation, CorpusRow
from bayling.core.seeding import row_rng
from bayling.synthesize.followups import TASKS, TaskContext, Turn, pick
from bayling.synthesize.translation import directions_for, draw_instruction_language


@dataclass
class InteractiveOutcome:
    conversation: Conversation | None
    skipped: list[tuple[str, str]]  # (task, reason) of every follow-up that could not be produced
    teacher_turn: Turn | None = None  # a turn whose reply the teacher must write (always the last turn)
    fallback_instruction_language: bool = False


def interactive_conversation(
    row: CorpusRow,
    *,
    seed: int,
    index: int,
    instruction_languages: dict[str, float],
    task_weights: dict[str, float],
    max_followups: int,
    neighbours: Sequence[CorpusRow] = (),
    allowed_directions: Iterable[str] | None = None,
    system_prompt: str | None = None,
    teacher_enabled: bool = False,
) -> InteractiveOutcome:
    """A BayLing-1 interactive-translation conversation: a translation request, then follow-up turns.

    Follow-ups are drawn from the task catalogue by weight without repetition; a task that cannot
    produce a derivable (or teacher-written) reply is skipped and reported, and the next is tried.
    """
    rng = row_rng(seed, row.id, f"interactive:{index}")
    directions = directions_for(row.texts, allowed_directions)
    if not directions:
        return InteractiveOutcome(None, [("interactive", "no allowed direction in this row")])
    src, tgt = rng.choice(directions)
    lang, fell_back = draw_instruction_language(instruction_languages, src, rng)
    first_user = translation_prompt(row.texts[src], tgt, lang, pick(lang, "translate", rng, src="{src}", tgt_lang="{tgt_lang}"))
    messages = [] if system_prompt is None else [{"role": "system", "content": system_prompt}]
    messages += [{"role": "user", "content": first_user}, {"role": "assistant", "content": row.texts[tgt]}]
    turn_tasks, source_ids = ["translate"], [row.id]
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
    conversation = Conversation(
        id=f"{row.id}/interactive-{index}", messages=messages, task="interactive", family="interactive", group="cross",
        instruction_language=lang, src_lang=src, tgt_lang=tgt, turn_tasks=turn_tasks, source_ids=source_ids,
    )
    return InteractiveOutcome(conversation, skipped, teacher_turn, fell_back)
