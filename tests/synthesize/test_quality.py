import pytest

from bayling.synthesize.quality import check_langid, check_script, length_ratio, normalized_key, script_profile


@pytest.mark.parametrize(
    "text, code, ok",
    [
        ("Lavez-vous les mains.", "fra_Latn", True),
        ("Мойте руки.", "rus_Cyrl", True),
        ("用肥皂洗手。", "zho_Hans", True),
        ("相对于 MERS-CoV，SARS-CoV-2 在基因方面与 SARS-CoV 更加相似。", "zho_Hans", True),  # acronyms in Chinese
        ("石鹸で手を洗ってください。", "jpn_Jpan", True),
        ("손을 씻으세요.", "kor_Hang", True),
        ("हाथ धोएं।", "hin_Deva", True),
        ("Wash your hands.", "zho_Hans", False),
        ("Мойте руки.", "fra_Latn", False),
        ("Lavez-vous les mains.", "arb_Arab", False),
        ("2020 — 19", "eng_Latn", True),  # no letters: nothing to judge
    ],
)
def test_script_check(text, code, ok):
    assert check_script(text, code).ok is ok


def test_script_check_reports_share_and_dominant_script():
    check = check_script("Wash your hands.", "zho_Hans")
    assert (check.expected, check.share, check.dominant) == ("Hans", 0.0, "Latn")
    assert script_profile("a用")["Hani"] == 3  # one Han character weighs as three letters


def test_length_ratio_uses_bytes():
    assert length_ratio("abcd", "ab") == 2.0
    assert length_ratio("用肥皂", "abc") == 3.0
    assert length_ratio("", "a") == float("inf")


def test_normalized_key_folds_case_punctuation_and_width():
    assert normalized_key("  Wash, YOUR hands!! ") == normalized_key("wash your hands") == "wash your hands"
    assert normalized_key("ＡＢＣ１２") == "abc12"


def test_langid_is_offline_and_checks_supported_languages():
    assert check_langid("Lavez-vous les mains avec du savon pendant vingt secondes.", "fra_Latn").ok
    wrong = check_langid("Wash your hands with soap and water for twenty seconds.", "fra_Latn")
    assert not wrong.ok and wrong.predicted == "en"
    unsupported = check_langid("anything", "ace_Latn")
    assert unsupported.ok and not unsupported.supported


def test_scripts_come_from_unicode_properties():
    # a combining mark counts for the letter it carries; the kana prolonged-sound mark is kana
    assert script_profile("ẹ̀kọ́ Yorùbá") == {"Latn": 11}
    assert set(script_profile("コーヒー")) == {"Kana"}
    assert check_script("Ọmọ mi ń lọ sí ilé ìwé.", "yor_Latn").ok
    assert check_script("ⵜⴰⵎⴰⵣⵉⵖⵜ", "tzm_Tfng").ok and not check_script("ⵜⴰⵎⴰⵣⵉⵖⵜ", "kab_Latn").ok
