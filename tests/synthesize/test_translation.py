import random
from collections import Counter

from bayling.core.prompts import language_name, translation_prompt
from bayling.core.records import CorpusRow
from bayling.synthesize.translation import directions_for, draw_instruction_language, translation_conversations

ROW = CorpusRow("c:1", "c", {"eng_Latn": "Wash your hands.", "fra_Latn": "Lavez-vous les mains.", "swh_Latn": "Nawa mikono."})


def test_prompt_uses_bayling_wording():
    assert translation_prompt("Wash your hands.", "fra_Latn") == "Provide the French translation for this sentence: Wash your hands."
    assert translation_prompt("Wash your hands.", "zho_Hans", "zh") == "提供这句话的中文翻译：Wash your hands."
    assert language_name("swh_Latn", "zh") == "斯瓦希里文"
    assert language_name("ace_Latn", "zh") == "Acehnese (Latin script)"  # no Chinese or native name known


def test_every_language_pair_in_both_directions():
    conversations = translation_conversations(ROW)
    pairs = {(c.src_lang, c.tgt_lang) for c in conversations}
    assert pairs == {(a, b) for a in ROW.texts for b in ROW.texts if a != b}
    for conv in conversations:
        src, tgt = conv.src_lang, conv.tgt_lang
        assert conv.messages[0]["role"] == "user" and ROW.texts[src] in conv.messages[0]["content"]
        assert conv.messages[1] == {"role": "assistant", "content": ROW.texts[tgt]}
        assert conv.to_json()["meta"] == {
            "task": "translate", "family": "translation", "group": "cross", "instruction_language": "en",
            "turn_tasks": ["translate"], "src_lang": src, "tgt_lang": tgt, "source_ids": ["c:1"],
        }
    assert len({c.id for c in conversations}) == len(conversations)


def test_directions_can_be_restricted_and_system_prompt_added():
    conversations = translation_conversations(ROW, allowed_directions=["eng_Latn-swh_Latn"], system_prompt="Be brief.")
    assert [c.id for c in conversations] == ["c:1/eng_Latn-swh_Latn"]
    assert conversations[0].messages[0] == {"role": "system", "content": "Be brief."}
    assert directions_for(["b", "a"]) == [("a", "b"), ("b", "a")]


def test_instruction_language_draws_follow_the_weights():
    conversations = [c for i in range(60) for c in translation_conversations(
        CorpusRow(f"r{i}", "c", ROW.texts), instruction_language={"en": 1.0, "zh": 1.0}, seed=3)]
    langs = Counter(c.instruction_language for c in conversations)
    assert set(langs) == {"en", "zh"} and min(langs.values()) > 100
    zh = next(c for c in conversations if c.instruction_language == "zh")
    assert any(name in zh.messages[0]["content"] for name in ("英文", "法文", "斯瓦希里文"))
    again = [c for i in range(60) for c in translation_conversations(
        CorpusRow(f"r{i}", "c", ROW.texts), instruction_language={"en": 1.0, "zh": 1.0}, seed=3)]
    assert again == conversations


def test_source_instruction_language_falls_back_when_no_templates():
    rng = random.Random(0)
    assert draw_instruction_language({"source": 1.0}, "zho_Hans", rng) == ("zh", False)
    assert draw_instruction_language({"source": 1.0}, "swh_Latn", rng) == ("en", True)
