"""Instruction following on BayLing-80-style question sets: the questions, multi-turn answers generated in
batches (turn k of every question in one batch), and other systems' released answers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bayling.core.errors import PipelineError
from bayling.evaluate.engines import Replier


@dataclass(frozen=True)
class Question:
    id: str
    turns: tuple[str, ...]
    category: str


def read_questions(paths: Sequence[Path], limit: int | None = None) -> list[Question]:
    """The questions of every file in order; a question's id is `{file stem}:{question_id}` (the line number where a
    row has none), and two questions with one id (a repeated question_id, or two files of the same name) are refused:
    answers and references are matched to questions by id."""
    questions = []
    where: dict[str, str] = {}
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for lineno, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    text = row["text"]
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise PipelineError(f"{path}:{lineno}: not a BayLing-80 question ({exc})") from None
                question_id = f"{Path(path).stem}:{row.get('question_id', lineno)}"
                if question_id in where:
                    raise PipelineError(f"{path}:{lineno}: question id '{question_id}' is also {where[question_id]}'s: every "
                                        "question needs its own (rename one of two files with the same name)")
                where[question_id] = f"{path}:{lineno}"
                turns = tuple(text) if isinstance(text, list) else (text,)
                questions.append(Question(question_id, turns, row.get("category", "")))
    return questions[:limit] if limit else questions


def answer(replier: Replier, questions: Sequence[Question], *, max_new_tokens: int) -> list[list[str]]:
    """Every question's answers, turn by turn: the whole set's turn k is one batch of requests."""
    histories: list[list[dict[str, str]]] = [[] for _ in questions]
    answers: list[list[str]] = [[] for _ in questions]
    for turn in range(max(len(q.turns) for q in questions)):
        active = [i for i, q in enumerate(questions) if turn < len(q.turns)]
        for i in active:
            histories[i].append({"role": "user", "content": questions[i].turns[turn]})
        replies = replier([histories[i] for i in active], max_new_tokens=max_new_tokens)
        for i, reply in zip(active, replies):
            text = reply.strip()
            histories[i].append({"role": "assistant", "content": text})
            answers[i].append(text)
    return answers


def read_answers(path: Path) -> dict[str, list[str]]:
    """Another system's answers, BayLing style: {"question_id", "text": str | [answers]} per line. A question_id
    is a question's bare number or its full id (`{file stem}:{question_id}`); one given twice is refused."""
    out: dict[str, list[str]] = {}
    first: dict[str, int] = {}
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                key, text = str(row["question_id"]), row["text"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise PipelineError(f"{path}:{lineno}: not an answer row ({exc})") from None
            if key in first:
                raise PipelineError(f"{path}:{lineno}: question_id {key} again (first at line {first[key]})")
            first[key] = lineno
            out[key] = list(text) if isinstance(text, list) else [text]
    return out
