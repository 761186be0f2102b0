"""Instruction following on BayLing-80-style question sets: multi-turn answers generated in batches, and an
optional pairwise LLM judge that writes reviews in the GPT-4-review format BayLing's release uses."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bayling.errors import PipelineError
from bayling.generation import generate


@dataclass(frozen=True)
class Question:
    id: str
    turns: tuple[str, ...]
    category: str


def read_questions(paths: Sequence[Path], limit: int | None = None) -> list[Question]:
    questions = []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for lineno, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    text = row["text"]
                except (json.JSONDecodeError, KeyError) as exc:
                    raise PipelineError(f"{path}:{lineno}: not a BayLing-80 question ({exc})") from None
                turns = tuple(text) if isinstance(text, list) else (text,)
                questions.append(Question(f"{Path(path).stem}:{row.get('question_id', lineno)}", turns, row.get("category", "")))
    return questions[:limit] if limit else questions


def answer(model: Any, tokenizer: Any, questions: Sequence[Question], *, batch_size: int, max_new_tokens: int) -> list[list[str]]:
    """Every question's answers, turn by turn: the whole set's turn k is one batched generation."""
    histories: list[list[dict[str, str]]] = [[] for _ in questions]
    answers: list[list[str]] = [[] for _ in questions]
    for turn in range(max(len(q.turns) for q in questions)):
        active = [i for i, q in enumerate(questions) if turn < len(q.turns)]
        for i in active:
            histories[i].append({"role": "user", "content": questions[i].turns[turn]})
        replies = generate(model, tokenizer, [histories[i] for i in active], batch_size=batch_size, max_new_tokens=max_new_tokens)
        for i, reply in zip(active, replies):
            text = reply.strip()
            histories[i].append({"role": "assistant", "content": text})
            answers[i].append(text)
    return answers


JUDGE_SYSTEM = "You are a helpful and precise assistant for checking the quality of the answer."
JUDGE_PROMPT = (
    "[Question]\n{question}\n\n[The Start of Assistant 1's Answer]\n{answer1}\n[The End of Assistant 1's Answer]\n\n"
    "[The Start of Assistant 2's Answer]\n{answer2}\n[The End of Assistant 2's Answer]\n\n"
    "[System]\nWe would like to request your feedback on the performance of two AI assistants in response to the user "
    "question displayed above.\nPlease rate the helpfulness, relevance, accuracy and level of detail of their responses. "
    "Each assistant receives an overall score on a scale of 1 to 10, where a higher score indicates better overall "
    "performance.\nPlease first output a single line containing only two values indicating the scores for Assistant 1 "
    "and 2, respectively. The two scores are separated by a space. In the subsequent line, please provide a "
    "comprehensive explanation of your evaluation."
)
_SCORES = re.compile(r"^\s*(\d+(?:\.\d+)?)[\s,]+(\d+(?:\.\d+)?)")


def judge_messages(question: Question, answers1: Sequence[str], answers2: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """One review request for a whole (possibly multi-turn) question; assistant 1 is the reference system."""
    asked = "\n".join(f"Turn {i + 1}: {t}" for i, t in enumerate(question.turns)) if len(question.turns) > 1 else question.turns[0]
    join = lambda answers: "\n".join(f"Turn {i + 1}: {a}" for i, a in enumerate(answers)) if len(answers) > 1 else (answers[0] if answers else "")  # noqa: E731
    return (("system", JUDGE_SYSTEM), ("user", JUDGE_PROMPT.format(question=asked, answer1=join(answers1), answer2=join(answers2))))


def parse_scores(review: str | None) -> tuple[float, float] | None:
    if not review:
        return None
    match = _SCORES.match(review.strip().splitlines()[0] if review.strip() else "")
    return (float(match.group(1)), float(match.group(2))) if match else None


def outcome(scores: tuple[float, float] | None) -> str:
    """WIN / LOSS / TIE for the candidate (assistant 2), or ERROR when the review has no scores."""
    if scores is None:
        return "ERROR"
    reference, candidate = scores
    return "WIN" if candidate > reference else "LOSS" if candidate < reference else "TIE"


def review_record(question: Question, review: str | None, reviewer: str, answer1_id: str, answer2_id: str) -> dict[str, Any]:
    """A review in the GPT-4-review format: scores as [assistant 1, assistant 2] plus the full text."""
    scores = parse_scores(review)
    return {
        "review_id": f"{question.id}:{answer1_id}:{answer2_id}",
        "question_id": question.id,
        "answer1_id": answer1_id,
        "answer2_id": answer2_id,
        "reviewer_id": reviewer,
        "metadata": {"category": question.category},
        "text": review or "",
        "score": list(scores) if scores else [-1, -1],
        "outcome": outcome(scores),
    }


def read_answers(path: Path) -> dict[str, list[str]]:
    """Another system's answers, BayLing style: {"question_id", "text": str | [answers]} per line."""
    out = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                text = row["text"]
                out[str(row["question_id"])] = list(text) if isinstance(text, list) else [text]
    return out
