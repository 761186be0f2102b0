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


B80 = SHARED / "bayling/data/BayLing-80"


def test_question_ids_are_unique_across_files_and_within_one(tmp_path):
    import pytest

    from bayling.core.errors import PipelineError

    for lang, text in (("en", "Write a haiku about rain."), ("zh", "写一首关于月亮的诗。")):
        (tmp_path / lang).mkdir()
        (tmp_path / lang / "questions.jsonl").write_text(f'{{"question_id": 1, "text": "{text}"}}\n', "utf-8")
    with pytest.raises(PipelineError, match=r"zh/questions.jsonl:1: question id 'questions:1' is also .*en/questions.jsonl:1"):
        read_questions([tmp_path / "en" / "questions.jsonl", tmp_path / "zh" / "questions.jsonl"])
    (tmp_path / "dup.jsonl").write_text('{"question_id": 7, "text": "a?"}\n{"question_id": 7, "text": "b?"}\n', "utf-8")
    with pytest.raises(PipelineError, match=r"dup.jsonl:2: question id 'dup:7' is also .*dup.jsonl:1"):
        read_questions([tmp_path / "dup.jsonl"])


def test_reference_answers_are_read_once_per_question(tmp_path):
    import pytest

    from bayling.core.errors import PipelineError
    from bayling.evaluate.bayling80 import read_answers

    (tmp_path / "ref.jsonl").write_text('{"question_id": 1, "text": "x"}\n{"question_id": 1, "text": "y"}\n', "utf-8")
    with pytest.raises(PipelineError, match=r"ref.jsonl:2: question_id 1 again \(first at line 1\)"):
        read_answers(tmp_path / "ref.jsonl")


def test_each_question_is_judged_against_the_reference_answer_to_that_question():
    """BayLing-80 in English and Chinese asks the same 80 question_ids: an English reference keyed by bare
    question_id must not be taken as the reference for the Chinese questions."""
    from bayling.evaluate.judge import judged_pairs

    questions = read_questions([B80 / "BayLing-80.singleturn.en.jsonl", B80 / "BayLing-80.singleturn.zh.jsonl"])
    candidate = [[f"answer to {q.id}"] for q in questions]
    english = {str(i): [f"reference to English {i}"] for i in range(1, 81)}
    pairs, notes = judged_pairs(questions, candidate, english)
    assert pairs == [] and notes == ["judge: 160 questions not judged: their question_id is in more than one question file, so a "
                                     "reference keyed by question_id alone is ambiguous; key its answers '<file stem>:<question_id>' "
                                     "(e.g. 'BayLing-80.singleturn.en:1')"]
    keyed = {f"BayLing-80.singleturn.en:{i}": [f"reference to English {i}"] for i in range(1, 81)}
    pairs, notes = judged_pairs(questions, candidate, keyed)
    assert len(pairs) == 80 and all(q.id.startswith("BayLing-80.singleturn.en:") for q, _, _ in pairs)
    assert all(ref == [f"reference to English {q.id.split(':')[1]}"] and ours == [f"answer to {q.id}"] for q, ref, ours in pairs)
    assert notes == ["judge: 80 questions have no reference answer"]
    # one question file: a bare question_id is unambiguous
    english_only = read_questions([B80 / "BayLing-80.singleturn.en.jsonl"])
    pairs, notes = judged_pairs(english_only, candidate[:80], english)
    assert len(pairs) == 80 and notes == [] and pairs[4][1] == ["reference to English 5"]
