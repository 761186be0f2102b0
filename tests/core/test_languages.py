import pytest

from bayling.core import languages
from bayling.core.errors import PipelineError
from bayling.core.languages import bleu_tokenizer_for, get_language, language_table, suggest_code


def test_table_covers_flores200():
    table = language_table()
    assert len(table) == 204
    assert {"eng_Latn", "zho_Hans", "zho_Hant", "swh_Latn", "jpn_Jpan", "arb_Latn", "min_Arab"} <= set(table)
    for code, lang in table.items():
        assert code == f"{lang.iso639_3}_{lang.script}"
        assert lang.name


def test_iso_and_script_fields():
    zh = get_language("zho_Hans")
    assert (zh.name, zh.script, zh.iso639_1, zh.native_name) == ("Chinese (Simplified)", "Hans", "zh", "简体中文")
    assert get_language("swh_Latn").iso639_1 == "sw"


@pytest.mark.parametrize(
    "typo, expected",
    [("eng_latn", "eng_Latn"), ("fr", "fra_Latn"), ("French", "fra_Latn"), ("zho_hans", "zho_Hans"), ("swh", "swh_Latn")],
)
def test_unknown_codes_get_a_suggestion(typo, expected):
    assert suggest_code(typo) == expected
    with pytest.raises(PipelineError, match=f"did you mean '{expected}'"):
        get_language(typo)


@pytest.mark.parametrize(
    "code, tokenizer",
    [("zho_Hans", "zh"), ("zho_Hant", "zh"), ("yue_Hant", "zh"), ("eng_Latn", "13a"), ("deu_Latn", "13a"), ("jpn_Jpan", "ja-mecab")],
)
def test_bleu_tokenizer_per_target_language(code, tokenizer):
    choice = bleu_tokenizer_for(code)
    assert choice.tokenizer == tokenizer
    assert choice.warning is None


def test_japanese_falls_back_to_char_with_a_warning_when_mecab_is_missing(monkeypatch):
    monkeypatch.setattr(languages, "_tokenizer_available", lambda name: name != "ja-mecab")
    choice = bleu_tokenizer_for("jpn_Jpan")
    assert (choice.tokenizer, choice.preferred) == ("char", "ja-mecab")
    assert "ja-mecab" in choice.warning and "char" in choice.warning
