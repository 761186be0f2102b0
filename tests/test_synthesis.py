import random

from bayling.synthesis import (
    build_card,
    directions_for,
    language_name,
    split_rows,
    translation_conversations,
    translation_prompt,
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
        assert conv["meta"] == {"task": "translate", "src_lang": src, "tgt_lang": tgt, "source_ids": ["c:1"]}
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
    card = build_card({"train": train, "heldout": []}, {"seed": 1})
    assert card["splits"]["train"]["per_task"] == {"translate": 6}
    assert card["splits"]["train"]["per_language_pair"]["eng_Latn-fra_Latn"] == 1
    assert card["splits"]["heldout"]["conversations"] == 0
