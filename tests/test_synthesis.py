import random
from collections import Counter

import pytest

from bayling.prompts import language_name, translation_prompt
from bayling.synthesis import (
    PAPER_MIX,
    achieved_mix,
    build_card,
    directions_for,
    draw_instruction_language,
    interactive_conversation,
    keep_draw,
    plan_mix,
    split_rows,
    translation_conversations,
)

ROW = {"id": "c:1", "texts": {"eng_Latn": "Wash your hands.", "fra_Latn": "Lavez-vous les mains.", "swh_Latn": "Nawa mikono."}}


def test_prompt_uses_bayling_wording():
    assert translation_prompt("Wash your hands.", "fra_Latn") == "Provide the French translation for this sentence: Wash your hands."
    assert translation_prompt("Wash your hands.", "zho_Hans", "zh") == "提供这句话的中文翻译：Wash your hands."
    assert language_name("swh_Latn", "zh") == "斯瓦希里文"
    assert language_name("ace_Latn", "zh") == "Acehnese (Latin script)"  # no Chinese or native name known


def test_every_language_pair_in_both_directions():
    conversations = translation_conversations(ROW)
    pairs = {(c["meta"]["src_lang"], c["meta"]["tgt_lang"]) for c in conversations}
    assert pairs == {(a, b) for a in ROW["texts"] for b in ROW["texts"] if a != b}
    for conv in conversations:
        src, tgt = conv["meta"]["src_lang"], conv["meta"]["tgt_lang"]
        assert conv["messages"][0]["role"] == "user" and ROW["texts"][src] in conv["messages"][0]["content"]
        assert conv["messages"][1] == {"role": "assistant", "content": ROW["texts"][tgt]}
        assert conv["meta"] == {
            "task": "translate", "family": "translation", "group": "cross", "instruction_language": "en",
            "turn_tasks": ["translate"], "src_lang": src, "tgt_lang": tgt, "source_ids": ["c:1"],
        }
    assert len({c["id"] for c in conversations}) == len(conversations)


def test_directions_can_be_restricted_and_system_prompt_added():
    conversations = translation_conversations(ROW, allowed_directions=["eng_Latn-swh_Latn"], system_prompt="Be brief.")
    assert [c["id"] for c in conversations] == ["c:1/eng_Latn-swh_Latn"]
    assert conversations[0]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert directions_for(["b", "a"]) == [("a", "b"), ("b", "a")]


def _rows(n: int, shared_every: int = 0) -> list[dict]:
    rows = []
    for i in range(n):
        english = f"sentence {i // shared_every}" if shared_every else f"sentence {i}"
        rows.append({"id": f"r:{i}", "texts": {"eng_Latn": english, "fra_Latn": f"phrase {i}"}})
    return rows


def _segments(rows, ids):
    return {" ".join(t.casefold().split()) for r in rows if r["id"] in ids for t in r["texts"].values()}


def test_split_is_seeded_and_deterministic():
    rows = _rows(200)
    first = split_rows(rows, 0.1, seed=1)
    assert first == split_rows(list(rows), 0.1, seed=1)
    assert first != split_rows(rows, 0.1, seed=2)
    assert sum(v == "heldout" for v in first.values()) == 20


def test_no_segment_appears_on_both_sides_even_when_rows_share_text():
    # Every 3 consecutive rows share their English side; case and spacing differences must not leak.
    rows = _rows(300, shared_every=3)
    rows[7]["texts"]["fra_Latn"] = "PHRASE  0"  # joins row 7's group with row 0's group
    random.Random(0).shuffle(rows)
    split = split_rows(rows, 0.2, seed=5)
    train = {rid for rid, s in split.items() if s == "train"}
    heldout = {rid for rid, s in split.items() if s == "heldout"}
    assert heldout and train and not (train & heldout)
    assert not (_segments(rows, train) & _segments(rows, heldout))
    assert abs(len(heldout) - 60) <= 3


def test_tiny_corpus_still_gets_a_heldout_row():
    split = split_rows(_rows(3), 0.1, seed=0)
    assert sorted(split.values()) == ["heldout", "train", "train"]


def test_card_counts():
    train = translation_conversations(ROW)
    card = build_card({"train": train, "heldout": []}, {"seed": 1}, mix={"mode": "report"})
    assert card["splits"]["train"]["per_task"] == {"translate": 6}
    assert card["splits"]["train"]["per_language_pair"]["eng_Latn-fra_Latn"] == 1
    assert card["splits"]["train"]["per_language"] == {"eng_Latn": 4, "fra_Latn": 4, "swh_Latn": 4}
    assert card["splits"]["heldout"]["conversations"] == 0
    assert card["mix"] == {"mode": "report"}


def test_instruction_language_draws_follow_the_weights():
    conversations = [c for i in range(60) for c in translation_conversations(
        {"id": f"r{i}", "texts": ROW["texts"]}, instruction_language={"en": 1.0, "zh": 1.0}, seed=3)]
    langs = Counter(c["meta"]["instruction_language"] for c in conversations)
    assert set(langs) == {"en", "zh"} and min(langs.values()) > 100
    zh = next(c for c in conversations if c["meta"]["instruction_language"] == "zh")
    assert any(name in zh["messages"][0]["content"] for name in ("英文", "法文", "斯瓦希里文"))
    again = [c for i in range(60) for c in translation_conversations(
        {"id": f"r{i}", "texts": ROW["texts"]}, instruction_language={"en": 1.0, "zh": 1.0}, seed=3)]
    assert again == conversations


def test_source_instruction_language_falls_back_when_no_templates():
    rng = random.Random(0)
    assert draw_instruction_language({"source": 1.0}, "zho_Hans", rng) == ("zh", False)
    assert draw_instruction_language({"source": 1.0}, "swh_Latn", rng) == ("en", True)


def test_interactive_conversation_structure():
    from bayling.catalogue import TASK_NAMES

    row = {"id": "c:9", "texts": dict(ROW["texts"], zho_Hans="勤洗手。")}
    outcome = interactive_conversation(
        row, seed=1, index=0, instruction_languages={"en": 1.0}, task_weights={t: 1.0 for t in TASK_NAMES},
        max_followups=3, neighbours=[row],
    )
    conv = outcome.conversation
    roles = [m["role"] for m in conv["messages"]]
    assert roles == ["user", "assistant"] * (len(roles) // 2)
    assert conv["meta"]["turn_tasks"][0] == "translate" and 2 <= len(conv["meta"]["turn_tasks"]) <= 4
    assert conv["messages"][1]["content"] == row["texts"][conv["meta"]["tgt_lang"]]
    assert all(reason for _, reason in outcome.skipped)


def test_mix_plan_downsamples_to_the_requested_shares():
    plan = plan_mix({("general", "zh"): 1000, ("general", "en"): 50000, ("translation", "cross"): 3000}, PAPER_MIX, "downsample")
    kept = {cell: n * plan.keep_probability[cell] for cell, n in {("general", "zh"): 1000, ("general", "en"): 50000, ("translation", "cross"): 3000}.items()}
    total = sum(kept.values())
    assert kept[("general", "zh")] == pytest.approx(1000)
    assert kept[("general", "en")] / total == pytest.approx(0.262)
    assert kept[("translation", "cross")] / total == pytest.approx(0.306)


def test_mix_plan_renormalises_over_cells_with_data_and_reports():
    plan = plan_mix({("translation", "cross"): 300, ("interactive", "cross"): 30}, PAPER_MIX, "downsample")
    assert plan.keep_probability == {("translation", "cross"): pytest.approx(1.0), ("interactive", "cross"): pytest.approx(1.0)}
    assert plan.requested["any.zh"] == pytest.approx(0.432) and plan.available == {"any.cross": 330}
    report = plan_mix({("general", "other"): 5}, PAPER_MIX, "report")
    assert report.keep_probability == {("general", "other"): 1.0}
    assert report.available == {"general.other (not requested)": 5}
    assert achieved_mix({("general", "zh"): 1, ("translation", "cross"): 3}, PAPER_MIX) == {"any.cross": 0.75, "any.zh": 0.25}


def test_keep_draw_is_deterministic_and_calibrated():
    draws = [keep_draw(7, f"id{i}", 0.3) for i in range(5000)]
    assert draws == [keep_draw(7, f"id{i}", 0.3) for i in range(5000)]
    assert abs(sum(draws) / 5000 - 0.3) < 0.03
