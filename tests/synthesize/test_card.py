from bayling.synthesize.card import build_card
from bayling.synthesize.translation import translation_conversations

ROW = {"id": "c:1", "texts": {"eng_Latn": "Wash your hands.", "fra_Latn": "Lavez-vous les mains.", "swh_Latn": "Nawa mikono."}}


def test_card_counts():
    train = translation_conversations(ROW)
    card = build_card({"train": train, "heldout": []}, {"seed": 1}, mix={"mode": "report"})
    assert card["splits"]["train"]["per_task"] == {"translate": 6}
    assert card["splits"]["train"]["per_language_pair"]["eng_Latn-fra_Latn"] == 1
    assert card["splits"]["train"]["per_language"] == {"eng_Latn": 4, "fra_Latn": 4, "swh_Latn": 4}
    assert card["splits"]["heldout"]["conversations"] == 0
    assert card["mix"] == {"mode": "report"}
