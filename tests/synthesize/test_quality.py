import json
import re
from importlib import resources

import pytest
from pydantic import ValidationError

from bayling.config.synthesize import FilterParams
from bayling.core.errors import PipelineError
from bayling.core.languages import language_table
from bayling.synthesize.quality import (
    LANGID_BACKENDS,
    check_langid,
    check_script,
    langid_labels,
    langid_support,
    length_ratio,
    normalized_key,
    script_profile,
)
from bayling.synthesize.screening import screen_file


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


# fastText lid.176's labels, from https://fasttext.cc/docs/en/language-identification.html
LID176 = set("""af als am an ar arz as ast av az azb ba bar bcl be bg bh bn bo bpy br bs bxr ca cbk ce ceb ckb co cs cv cy da de
diq dsb dty dv el eml en eo es et eu fa fi fr frr fy ga gd gl gn gom gu gv he hi hif hr hsb ht hu hy ia id ie ilo io is it ja jbo jv
ka kk km kn ko krc ku kv kw ky la lb lez li lmo lo lrc lt lv mai mg mhr min mk ml mn mr mrj ms mt mwl my myv mzn nah nap nds ne new nl
nn no oc or os pa pam pfl pl pms pnb ps pt qu rm ro ru rue sa sah sc scn sco sd sh si sk sl so sq sr su sv sw ta te tg th tk tl tr tt
tyv ug uk ur uz vec vep vi vls vo wa war wuu xal xmf yi yo yue zh""".split())


def _table_rows() -> list[dict[str, str]]:
    text = resources.files("bayling.synthesize.resources").joinpath("langid_labels.tsv").read_text("utf-8")
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    header = lines[0].split("\t")
    assert header == ["flores", *LANGID_BACKENDS, "note"]
    rows = [line.split("\t") for line in lines[1:]]
    assert all(len(row) == len(header) for row in rows), "every row has a cell per column"
    return [dict(zip(header, row)) for row in rows]


def test_label_table_covers_every_flores_code_once():
    codes = [row["flores"] for row in _table_rows()]
    assert len(codes) == len(set(codes))
    assert set(codes) == set(language_table())


def test_label_table_langid_py_column_matches_its_classes():
    from langid.langid import LanguageIdentifier, model

    classes = set(LanguageIdentifier.from_modelstring(model).nb_classes)
    assert len(classes) == 97
    table = language_table()
    for row in _table_rows():
        labels = [label for label in row["langid"].split("|") if label]
        assert set(labels) <= classes, row
        iso1 = table[row["flores"]].iso639_1
        if iso1 in classes:  # every language langid.py knows by its ISO 639-1 code is checked, with that code first
            assert labels[0] == iso1, row
        if labels and labels != [iso1]:  # anything else is a macrolanguage or a confusion, and says so
            assert row["note"], row
    mapped = {label for row in _table_rows() for label in row["langid"].split("|") if label}
    # langid.py classes no FLORES-200 language uses: Aragonese, Breton, Latin, Northern Sami, Volapük, Walloon
    assert classes - mapped == {"an", "br", "la", "se", "vo", "wa"}


def test_label_table_fasttext_column_uses_lid176_labels():
    assert len(LID176) == 176
    for row in _table_rows():
        labels = [label for label in row["fasttext"].split("|") if label]
        assert set(labels) <= LID176, row
    assert langid_labels()["als_Latn"]["fasttext"] == ("sq",)  # lid.176's "als" is Alemannic, not Tosk Albanian


def test_label_table_glotlid_column_is_iso639_3_with_script():
    for row in _table_rows():
        label, code = row["glotlid"], row["flores"]
        if not label:
            assert row["note"], row
            continue
        assert re.fullmatch(r"[a-z]{3}_[A-Z][a-z]{3}", label), row
        if label != code:
            assert "glotlid" in row["note"], row
            script = code.split("_")[1]
            assert label.split("_")[1] == ("Hani" if script in ("Hans", "Hant") else script), row
    assert langid_labels()["zho_Hant"]["glotlid"] == ("cmn_Hani",)


def test_langid_py_accepts_the_labels_it_confuses(shared_data):
    # langid.py calls most Zulu "xh": with zu alone it removed 220 of these 300 TICO-19 Zulu lines at 0.9
    zulu = (shared_data / "parallel" / "tico19" / "en-zu" / "test.zu").read_text("utf-8").splitlines()[:300]
    checks = [check_langid(line, "zul_Latn", 0.9) for line in zulu]
    assert sum(c.predicted == "xh" for c in checks) > 200 and sum(not c.ok for c in checks) <= 5
    assert langid_support("nob_Latn").labels == ("nb", "no")  # Bokmål comes out as "nb" or "no"
    unsupported = langid_support("hau_Latn")
    assert not unsupported.checked and unsupported.reason == "no langid label for hau_Latn in langid_labels.tsv"


def test_fasttext_backends_need_a_model_path(tmp_path):
    with pytest.raises(ValidationError, match="needs langid_model_path"):
        FilterParams(langid=True, langid_backend="glotlid")
    with pytest.raises(ValidationError, match="langid.py ships its own model"):
        FilterParams(langid=True, langid_model_path="model.bin")
    missing = tmp_path / "glotlid.bin"
    with pytest.raises(PipelineError, match=f"synthesize.filters.langid_model_path: {re.escape(str(missing))} not found"):
        check_langid("Bonjour", "fra_Latn", backend="glotlid", model_path=str(missing))
    junk = tmp_path / "junk.bin"
    junk.write_text("not a model")
    pytest.importorskip("fasttext")
    with pytest.raises(PipelineError, match="is not a fastText model"):
        check_langid("Bonjour", "fra_Latn", backend="glotlid", model_path=str(junk))


def _train(lines_by_label: dict[str, list[str]], path):
    """A tiny real fastText supervised model (seconds on one thread), saved as a .bin like lid.176 and GlotLID."""
    fasttext = pytest.importorskip("fasttext")
    train = path.with_suffix(".txt")
    train.write_text("".join(f"__label__{label} {line}\n" for label, lines in lines_by_label.items() for line in lines), "utf-8")
    model = fasttext.train_supervised(str(train), epoch=25, lr=0.5, dim=16, minn=2, maxn=5, bucket=50000, thread=1, seed=0, verbose=0)
    model.save_model(str(path))
    return str(path)


@pytest.fixture(scope="module")
def tico(shared_data):
    def lines(pair: str, lang: str) -> list[str]:
        return (shared_data / "parallel" / "tico19" / pair / f"test.{lang}").read_text("utf-8").splitlines()

    return {"eng": lines("en-fr", "en"), "fra": lines("en-fr", "fr"), "swh": lines("en-sw", "sw")}


@pytest.fixture(scope="module")
def glotlid_style_model(tico, tmp_path_factory):
    """GlotLID-style labels (__label__eng_Latn): English, French and Swahili only, from TICO-19 lines 1-300."""
    return _train({f"{lang}_Latn": tico[lang][:300] for lang in ("eng", "fra", "swh")}, tmp_path_factory.mktemp("lid") / "glot.bin")


def test_glotlid_backend_flags_the_wrong_language_with_a_real_model(tico, glotlid_style_model):
    english, french = tico["eng"][1500], tico["fra"][1500]  # lines the model was not trained on
    assert check_langid(french, "fra_Latn", 0.9, backend="glotlid", model_path=glotlid_style_model).ok
    wrong = check_langid(english, "fra_Latn", 0.9, backend="glotlid", model_path=glotlid_style_model)
    assert (wrong.ok, wrong.predicted, wrong.supported, wrong.backend) == (False, "eng_Latn", True, "glotlid")
    assert wrong.probability >= 0.9
    # Chinese maps to cmn_Hani, a label this model lacks: the segment passes, unchecked
    chinese = check_langid("用肥皂洗手。", "zho_Hans", 0.9, backend="glotlid", model_path=glotlid_style_model)
    assert chinese.ok and not chinese.supported
    assert langid_support("zho_Hans", "glotlid", glotlid_style_model).reason == "the model has no label cmn_Hani"


def test_fasttext_backend_uses_lid176_labels(tico, tmp_path):
    model = _train({"en": tico["eng"][:300], "fr": tico["fra"][:300]}, tmp_path / "lid.bin")
    wrong = check_langid(tico["eng"][1500], "fra_Latn", 0.9, backend="fasttext", model_path=model)
    assert (wrong.ok, wrong.predicted) == (False, "en")
    assert check_langid(tico["fra"][1500], "fra_Latn", 0.9, backend="fasttext", model_path=model).ok
    with pytest.raises(PipelineError, match="has none of the glotlid labels"):  # a lid.176-style model given as GlotLID
        check_langid("Bonjour", "fra_Latn", backend="glotlid", model_path=model)


def test_screen_report_says_which_languages_language_id_checked(tico, glotlid_style_model, tmp_path):
    rows = [
        {"id": f"r{i}", "source": "tico19", "texts": {"eng_Latn": tico["eng"][i], "fra_Latn": tico["fra"][i], "zho_Hans": "用肥皂洗手。"}}
        for i in range(1500, 1504)
    ]
    rows[1]["texts"]["fra_Latn"] = tico["eng"][1501]  # English where French belongs
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), "utf-8")
    filters = FilterParams(langid=True, langid_backend="glotlid", langid_model_path=glotlid_style_model, max_length_ratio=100)
    with open(tmp_path / "quarantine.jsonl", "w", encoding="utf-8") as quarantine:
        stats = screen_file(corpus, tmp_path / "kept.jsonl", quarantine, filters, None)
    report = stats.as_dict()["language_id"]
    assert (report["backend"], report["checked"], report["unchecked"]) == ("glotlid", ["eng_Latn", "fra_Latn"], ["zho_Hans"])
    assert report["languages"]["fra_Latn"] == {"checked": True, "labels": ["fra_Latn"], "segments": 4, "removed": 1}
    assert report["languages"]["zho_Hans"] == {
        "checked": False, "labels": ["cmn_Hani"], "segments": 4, "unchecked_because": "the model has no label cmn_Hani"
    }
    assert stats.segments_removed == {"language ID": 1}
    assert "language ID says eng_Latn" in (tmp_path / "quarantine.jsonl").read_text("utf-8")


def test_screen_report_says_when_language_id_is_off(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"id": "a", "texts": {"eng_Latn": "Wash your hands.", "fra_Latn": "Lavez-vous les mains."}}) + "\n")
    with open(tmp_path / "quarantine.jsonl", "w", encoding="utf-8") as quarantine:
        stats = screen_file(corpus, tmp_path / "kept.jsonl", quarantine, FilterParams(), None)
    assert stats.as_dict()["language_id"] == {"enabled": False}
