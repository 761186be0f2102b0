"""A pairwise LLM judge for BayLing-80 answers, writing reviews in the GPT-4-review format BayLing's
release uses: "score1 score2" on the first line, then the explanation. Asked through the shared chat
client (any OpenAI-compatible endpoint), with its own cache."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bayling.config.evaluate import JudgeParams
from bayling.core.chat_client import ask
from bayling.evaluate.bayling80 import Question

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

    def join(answers: Sequence[str]) -> str:
        return "\n".join(f"Turn {i + 1}: {a}" for i, a in enumerate(answers)) if len(answers) > 1 else (answers[0] if answers else "")

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


def judged_pairs(questions: Sequence[Question], candidate: Sequence[list[str]], reference: dict[str, list[str]]
                 ) -> tuple[list[tuple[Question, list[str], list[str]]], list[str]]:
    """(question, reference answers, candidate answers) for every question the reference answered, and notes on
    the rest. A reference answer is found under the question's full id (`{file stem}:{question_id}`), or under its
    bare question_id when no other configured question file has that question_id: BayLing-80's English and
    Chinese files number the same 80 questions, and an English reference is no reference for a Chinese question."""
    bare = Counter(q.id.rsplit(":", 1)[-1] for q in questions)
    pairs, missing, ambiguous = [], 0, 0
    for question, answers in zip(questions, candidate):
        number = question.id.rsplit(":", 1)[-1]
        if question.id in reference:
            pairs.append((question, reference[question.id], answers))
        elif number in reference and bare[number] == 1:
            pairs.append((question, reference[number], answers))
        elif number in reference:
            ambiguous += 1
        else:
            missing += 1
    notes = []
    if ambiguous:
        example = next(q.id for q in questions if bare[q.id.rsplit(":", 1)[-1]] > 1)
        notes.append(f"judge: {ambiguous} questions not judged: their question_id is in more than one question file, so a "
                     f"reference keyed by question_id alone is ambiguous; key its answers '<file stem>:<question_id>' (e.g. "
                     f"'{example}')")
    if missing:
        notes.append(f"judge: {missing} questions have no reference answer")
    return pairs, notes


@dataclass(frozen=True)
class JudgeOutcome:
    reviews: list[dict[str, Any]]
    metrics: dict[str, float | int | None]
    notes: list[str]


def run_judge(
    params: JudgeParams,
    questions: Sequence[Question],
    candidate: Sequence[list[str]],
    reference: dict[str, list[str]],
    reference_id: str,
    root: Path,
) -> JudgeOutcome:
    """Review every question the reference system also answered; WIN/LOSS/TIE counts and the win rate."""
    judged, notes = judged_pairs(questions, candidate, reference)
    texts, _ = ask(params, [judge_messages(q, r, a) for q, r, a in judged], root / params.cache_path)
    reviews = [review_record(q, text, params.model, reference_id, "final") for (q, _, _), text in zip(judged, texts)]
    counts = Counter(r["outcome"] for r in reviews)
    scored = counts["WIN"] + counts["LOSS"] + counts["TIE"]
    notes += [f"judge: {counts['ERROR']} reviews without scores"] if counts["ERROR"] else []
    metrics = {
        "instructions.judge.win": counts["WIN"],
        "instructions.judge.loss": counts["LOSS"],
        "instructions.judge.tie": counts["TIE"],
        "instructions.judge.error": counts["ERROR"],
        "instructions.judge.win_rate": round((counts["WIN"] + 0.5 * counts["TIE"]) / scored, 4) if scored else None,
    }
    return JudgeOutcome(reviews, metrics, notes)
