from pathlib import Path

from bayling.evaluate.bayling80 import Question, answer, read_questions
from bayling.evaluate.judge import judge_messages, outcome, parse_scores, review_record

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def test_reading_bayling80():
    multi = read_questions([SHARED / "bayling/data/BayLing-80/BayLing-80.multiturn.en.jsonl"], limit=3)
    single = read_questions([SHARED / "bayling/data/BayLing-80/BayLing-80.singleturn.zh.jsonl"], limit=2)
    assert len(multi) == 3 and all(len(q.turns) == 2 for q in multi)
    assert all(len(q.turns) == 1 for q in single) and single[0].id.endswith(":1")


def test_multi_turn_answers_on_the_tiny_model(tiny_model_dir):
    from transformers import AutoTokenizer

    from bayling.evaluate.engines import LazyModel, LocalReplier

    questions = read_questions([SHARED / "bayling/data/BayLing-80/BayLing-80.multiturn.en.jsonl"], limit=3) + [
        Question("x:1", ("Just one turn?",), "generic")]
    replier = LocalReplier(LazyModel(tiny_model_dir, "fp32"), AutoTokenizer.from_pretrained(tiny_model_dir), batch_size=4)
    replies = answer(replier, questions, max_new_tokens=5)
    assert [len(r) for r in replies] == [2, 2, 2, 1]


def test_review_format_and_outcomes():
    assert parse_scores("8 6\nAssistant 1 was better because...") == (8.0, 6.0)
    assert parse_scores("7.5, 9\nexplanation") == (7.5, 9.0)
    assert parse_scores("no scores here") is None and parse_scores(None) is None
    assert [outcome(s) for s in [(8, 6), (6, 8), (7, 7), None]] == ["LOSS", "WIN", "TIE", "ERROR"]
    q = Question("BayLing-80.en:3", ("a?", "b?"), "generic")
    record = review_record(q, "6 9\nsecond is better", "judge-model", "base", "final")
    assert record["score"] == [6.0, 9.0] and record["outcome"] == "WIN" and record["metadata"] == {"category": "generic"}
    assert {"review_id", "question_id", "answer1_id", "answer2_id", "reviewer_id", "text", "score"} <= set(record)
    (system, user) = judge_messages(q, ["x", "y"], ["z", "w"])
    assert system[0] == "system" and "Turn 2: b?" in user[1] and "Turn 1: z" in user[1]
