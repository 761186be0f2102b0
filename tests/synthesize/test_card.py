from dataclasses import replace

from bayling.core.records import CorpusRow
from bayling.synthesize.card import build_card
from bayling.synthesize.translation import translation_conversations

ROW = CorpusRow("c:1", "c", {"eng_Latn": "Wash your hands.", "fra_Latn": "Lavez-vous les mains.", "swh_Latn": "Nawa mikono."})


def test_card_counts():
    train = translation_conversations(ROW)
    card = build_card({"train": train, "heldout": []}, {"seed": 1}, mix={"mode": "report"})
    assert card["splits"]["train"]["per_task"] == {"translate": 6}
    assert card["splits"]["train"]["per_language_pair"]["eng_Latn-fra_Latn"] == 1
    assert card["splits"]["train"]["per_language"] == {"eng_Latn": 4, "fra_Latn": 4, "swh_Latn": 4}
    assert card["splits"]["heldout"]["conversations"] == 0
    assert card["mix"] == {"mode": "report"}


def test_a_corpus_row_and_a_general_chat_of_one_name_are_two_source_rows():
    """Corpus rows are `{fetch source}:{id}`, general chats `{general source}:{id}`: the two may share a name."""
    from bayling.synthesize.general import monolingual

    row = replace(ROW, id="mydata:1")
    chat = {"id": "1", "messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]}
    card = build_card({"train": [*translation_conversations(row), monolingual(chat, "mydata", "eng_Latn")]}, {"seed": 1})
    assert card["splits"]["train"]["source_rows"] == 2
