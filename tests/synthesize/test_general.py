import random

from bayling.core.quarantine import Problem, Quarantined
from bayling.synthesize.general import (
    cross_from_aligned,
    cross_from_teacher,
    monolingual,
    read_general,
    teacher_translation_requests,
    validate_messages,
)

EN = {
    "id": "7",
    "messages": [{"role": "user", "content": "How do I stay healthy?"}, {"role": "assistant", "content": "Sleep well and exercise."}],
}
ZH = {"id": "7", "messages": [{"role": "user", "content": "如何保持健康？"}, {"role": "assistant", "content": "睡好觉，多锻炼。"}]}


def test_message_validation():
    assert validate_messages(EN["messages"]) == []
    problems = validate_messages([{"role": "user", "content": "hi"}, {"role": "bot", "content": "x"}])
    assert problems[0].field == "messages[1].role"
    assert validate_messages([{"role": "user", "content": "hi"}])[0].reason.startswith("turns must alternate")
    assert validate_messages([{"role": "user", "content": " "}, {"role": "assistant", "content": "x"}])[0].reason == "empty text"


def test_read_general_quarantines_bad_lines():
    lines = [
        (1, b'{"id": 1, "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}'),
        (2, b"not json"),
        (3, b'{"messages": []}'),
        (4, b"\xff\xfe"),
    ]
    records = list(read_general("g.jsonl", "g", iter(lines)))
    assert isinstance(records[0], dict) and records[0]["id"] == "1"
    assert [r.line for r in records if isinstance(r, Quarantined)] == [2, 3, 4]


def test_monolingual_groups():
    assert monolingual(ZH, "g", "zho_Hans").group == "zh"
    assert monolingual(EN, "g", "eng_Latn").group == "en"
    assert monolingual(EN, "g", "fra_Latn").group == "other"


def test_cross_lingual_from_aligned_versions():
    chat = cross_from_aligned(EN, ZH, source="g", prompt_language="eng_Latn", answer_language="zho_Hans", rng=random.Random(0))
    assert chat.messages[0]["content"].startswith("How do I stay healthy?")
    assert "Chinese" in chat.messages[0]["content"]
    assert chat.messages[1]["content"] == "睡好觉，多锻炼。"
    assert chat.group == "cross" and chat.family == "general"
    reverse = cross_from_aligned(ZH, EN, source="g", prompt_language="zho_Hans", answer_language="eng_Latn", rng=random.Random(0))
    assert "英文" in reverse.messages[0]["content"] and reverse.messages[1]["content"] == "Sleep well and exercise."


def test_cross_lingual_via_teacher_requests_one_translation_per_reply():
    requests = teacher_translation_requests(EN, "swh_Latn")
    assert len(requests) == 1 and "Swahili" in requests[0][1][1] and "Sleep well" in requests[0][1][1]
    chat = cross_from_teacher(
        EN, ["Lala vizuri."], source="g", prompt_language="eng_Latn", answer_language="swh_Latn", rng=random.Random(0)
    )
    assert chat.messages[1]["content"] == "Lala vizuri." and chat.tgt_lang == "swh_Latn"


def test_hostile_chats_are_quarantined():
    lines = [(1, b'{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "c"}], "messages": []}'),
             (2, b'{"messages": [{"role": "user", "content": "hi\\u0000"}, {"role": "assistant", "content": "x"}]}'),
             (3, b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "\\u202ereversed"}]}')]
    records = list(read_general("g.jsonl", "g", iter(lines)))
    assert all(isinstance(r, Quarantined) for r in records)
    assert records[0].problems[0].reason == "repeated key 'messages'"
    assert records[1].problems[0] == Problem("messages[0].content", "NUL byte in text")
    assert records[2].problems[0].reason == "bidi control U+202E in text"
