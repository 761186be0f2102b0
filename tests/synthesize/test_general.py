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


def _chat(question: str, answer: str, chat_id: str | None = None) -> str:
    import json

    row = {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}
    return json.dumps({**({"id": chat_id} if chat_id is not None else {}), **row}, ensure_ascii=False) + "\n"


def _general(tmp_path, sources, **extra):
    from bayling.config.synthesize import SynthesizeParams
    from bayling.synthesize.general import build_general

    params = SynthesizeParams.model_validate({"seed": 13, "heldout_fraction": 0.01, "general": {"sources": sources, **extra}})
    return build_general(params, tmp_path, None)


def _cross(result):
    return [c for c in result.train + result.heldout if c.task == "general_cross"]


def test_chats_of_unrelated_sources_are_never_paired_by_id_or_line(tmp_path):
    """Two unrelated files without ids: line 1 of one is not a version of line 1 of the other."""
    (tmp_path / "en.jsonl").write_text(_chat("Name a synonym for happy.", "Joyful.") + _chat("Name a prime number.", "Seven."))
    (tmp_path / "zh.jsonl").write_text(_chat("如何煮米饭？", "先洗米，再加水煮。") + _chat("推荐一本书。", "我推荐《红楼梦》。"))
    (tmp_path / "en2.jsonl").write_text(_chat("What is 2 + 2?", "Four."))
    result = _general(tmp_path, [{"name": "dolly", "path": "en.jsonl", "language": "eng_Latn"},
                                 {"name": "oasst-zh", "path": "zh.jsonl", "language": "zho_Hans"},
                                 {"name": "alpaca", "path": "en2.jsonl", "language": "eng_Latn"}])
    assert _cross(result) == []
    assert sorted(c.id for c in result.train + result.heldout) == ["alpaca:1", "dolly:1", "dolly:2", "oasst-zh:1", "oasst-zh:2"]


def test_sources_in_one_parallel_group_are_versions_of_the_same_chats(tmp_path):
    (tmp_path / "en.jsonl").write_text(_chat("How do I stay healthy?", "Sleep well.", "h") + _chat("Name a colour.", "Red.", "c"))
    (tmp_path / "zh.jsonl").write_text(_chat("如何保持健康？", "睡好觉。", "h") + _chat("说出一种颜色。", "红色。", "c")
                                       + _chat("如何保持健康？", "多锻炼。", "h"))  # the same id again in one source
    (tmp_path / "zh2.jsonl").write_text(_chat("说出一种颜色。", "蓝色。", "c"))  # a second zh version in the same group
    result = _general(tmp_path, [{"name": "en", "path": "en.jsonl", "language": "eng_Latn", "parallel_group": "g"},
                                 {"name": "zh", "path": "zh.jsonl", "language": "zho_Hans", "parallel_group": "g"},
                                 {"name": "zh-other", "path": "zh2.jsonl", "language": "zho_Hans"}])
    pairs = sorted((c.messages[0]["content"].split("\n")[0], c.messages[1]["content"]) for c in _cross(result))
    assert pairs == [("How do I stay healthy?", "睡好觉。"), ("Name a colour.", "红色。"), ("如何保持健康？", "Sleep well."),
                     ("说出一种颜色。", "Red.")]
    assert result.stats["chats_in"] == 6 == result.stats["chats_kept"] + len(result.quarantined)
    (repeat,) = result.quarantined
    assert (repeat.source, repeat.line, repeat.problems[0].reason) == ("zh", 3, "duplicate id 'h' (first at line 1)")


def test_a_chat_id_may_not_look_like_a_mix_repeat(tmp_path):
    """The mix names a chat's second copy `id#2`: a chat whose own id is `q#2` would share that id."""
    (tmp_path / "en.jsonl").write_text(_chat("One?", "1.", "q") + _chat("Two?", "2.", "q#2"))
    result = _general(tmp_path, [{"name": "en", "path": "en.jsonl", "language": "eng_Latn"}])
    assert [c.id for c in result.train + result.heldout] == ["en:q"]
    assert [(q.line, q.problems[0].field, q.problems[0].reason) for q in result.quarantined] == \
        [(2, "id", "'#' is reserved for the mix's repeats (id#2, id#3, ...)")]


def test_general_sources_are_named_once_and_a_parallel_group_holds_one_source_per_language():
    import pytest
    from pydantic import ValidationError

    from bayling.config.synthesize import GeneralParams

    with pytest.raises(ValidationError, match="general source names must be unique"):
        GeneralParams.model_validate({"sources": [{"name": "a", "path": "x", "language": "eng_Latn"},
                                                  {"name": "a", "path": "y", "language": "zho_Hans"}]})
    with pytest.raises(ValidationError, match="parallel group g has two eng_Latn sources"):
        GeneralParams.model_validate({"sources": [{"name": "a", "path": "x", "language": "eng_Latn", "parallel_group": "g"},
                                                  {"name": "b", "path": "y", "language": "eng_Latn", "parallel_group": "g"}]})


def test_general_chats_are_cut_to_the_context_tokenize_gives_them_or_set_aside(tmp_path, tokenizer):
    """Measured with the chat template, as tokenize renders them: a chat that fits stays whole, a two-exchange chat
    whose second reply overflows keeps its first exchange, and one whose first reply overflows is set aside into
    the quarantine with its length. Tokenize then keeps every chat placed, whole."""
    import json

    from bayling.config.synthesize import SynthesizeParams
    from bayling.core.records import IGNORE_INDEX
    from bayling.synthesize.general import ChatFit, build_general
    from bayling.tokenize.chat import Renderer, fit, labels_for, strip_replies, tokenize_batch
    from bayling.tokenize.templates import compile_template, prepare_tokenizer

    long_answer = "This answer goes on and on about the weather in many words. " * 12
    rows = [_chat("Name a prime number.", "Seven.", "short"), _chat("Describe the weather.", long_answer, "long")]
    two = {"id": "two", "messages": [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."},
                                     {"role": "user", "content": "And the weather?"}, {"role": "assistant", "content": long_answer}]}
    (tmp_path / "en.jsonl").write_text("".join(rows) + json.dumps(two) + "\n")
    params = SynthesizeParams.model_validate({"seed": 13, "heldout_fraction": 0.001,
                                              "general": {"sources": [{"name": "d", "path": "en.jsonl", "language": "eng_Latn"}]}})
    result = build_general(params, tmp_path, None, ChatFit(tokenizer, 96))
    kept = {c.id: c for c in result.train + result.heldout}
    assert set(kept) == {"d:short", "d:two"} and len(kept["d:two"].messages) == 2 and kept["d:two"].messages[1]["content"] == "Blue."
    assert result.stats["set aside: longer than tokenize.max_seq_len"] == 1 and result.stats["cut to tokenize.max_seq_len"] == 1
    (aside,) = result.quarantined
    assert aside.line == 2 and "tokens as the chat template renders it" in aside.problems[0].reason
    assert result.stats["chats_in"] == result.stats["chats_kept"] + len(result.quarantined)

    prepared = prepare_tokenizer(tokenizer, "model")
    renderer = Renderer(prepared.tokenizer, prepared.end_of_turn, compile_template(prepared.tokenizer, prepared.end_of_turn))
    for item in tokenize_batch(prepared.tokenizer, renderer, [c.messages for c in kept.values()]):
        assert fit(item, 96, "drop")[1] == "kept"

    # what the mix weighs a conversation by: exactly the labels tokenize keeps of it, cut or not
    chats = [json.loads(line)["messages"] for line in (tmp_path / "en.jsonl").read_text().splitlines()]
    chats.append([{"role": "user", "content": "Hi."}, {"role": "assistant", "content": " Hello!"}])  # a leading space tokenize strips
    kept_labels = []
    for item in tokenize_batch(prepared.tokenizer, renderer, [strip_replies(c)[0] for c in chats]):
        cut, _ = fit(item, 96, "truncate")
        kept_labels.append(0 if cut is None else int((labels_for(cut) != IGNORE_INDEX).sum()))
    assert ChatFit(tokenizer, 96).supervised_tokens(chats) == kept_labels and kept_labels[1] == 0 and kept_labels[2] > 0
    assert ChatFit(tokenizer, 96).supervised_tokens([]) == []  # an empty shard (a run without general sources)
