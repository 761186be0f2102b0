"""BayLing's translation prompts (plain and lexically constrained) and how instructions name languages, in English
and Chinese."""

from __future__ import annotations

from collections.abc import Sequence

from bayling.core.languages import get_language

# BayLing's own wording (ictnlp/BayLing scripts/translate.py), in English and Chinese.
TRANSLATION_PROMPTS = {
    "en": "Provide the {tgt_lang} translation for this sentence: {src}",
    "zh": "提供这句话的{tgt_lang}翻译：{src}",
}

# Names used inside Chinese instructions; languages not listed fall back to their native or English name.
ZH_LANGUAGE_NAMES = {
    "eng_Latn": "英文", "zho_Hans": "中文", "zho_Hant": "繁体中文", "yue_Hant": "粤语", "jpn_Jpan": "日文",
    "kor_Hang": "韩文", "fra_Latn": "法文", "deu_Latn": "德文", "spa_Latn": "西班牙文", "por_Latn": "葡萄牙文",
    "ita_Latn": "意大利文", "rus_Cyrl": "俄文", "arb_Arab": "阿拉伯文", "hin_Deva": "印地文", "vie_Latn": "越南文",
    "tha_Thai": "泰文", "ind_Latn": "印尼文", "tur_Latn": "土耳其文", "swh_Latn": "斯瓦希里文", "nld_Latn": "荷兰文",
    "pol_Latn": "波兰文", "ukr_Cyrl": "乌克兰文", "ces_Latn": "捷克文", "isl_Latn": "冰岛文", "hau_Latn": "豪萨文",
    "zul_Latn": "祖鲁文", "amh_Ethi": "阿姆哈拉文", "khm_Khmr": "高棉文", "npi_Deva": "尼泊尔文",
}


def language_name(code: str, instruction_language: str = "en") -> str:
    """How an instruction written in `instruction_language` names the language `code`."""
    lang = get_language(code)
    if instruction_language == "zh":
        return ZH_LANGUAGE_NAMES.get(code) or lang.native_name or lang.name
    return lang.name


INSTRUCTION_CODES = {"en": "eng_Latn", "zh": "zho_Hans"}


def translation_prompt(src_text: str, tgt_lang: str, instruction_language: str = "en", template: str | None = None) -> str:
    """BayLing's translation request; `template` swaps in another phrasing with the same placeholders."""
    template = template or TRANSLATION_PROMPTS[instruction_language]
    return template.format(tgt_lang=language_name(tgt_lang, instruction_language), src=src_text)


# BayLing's lexically constrained request: its translation request, then on a new line the terms the translation must
# contain, joined by ", " (ictnlp/BayLing scripts/constrained_translate.py, the repository's script for translating its
# data/constrained_translation files, evaluated in arXiv 2306.10968; some of the outputs kept in its
# exp/constrained_translation echo that line back, so the wording shows there too).
CONSTRAINT_LINES = {
    "en": "Make sure to include these words: {terms}",
    "zh": "确保包含这些词：{terms}",
}


def constrained_translation_prompt(src_text: str, tgt_lang: str, terms: Sequence[str], instruction_language: str = "en") -> str:
    """BayLing's translation request with the terms its translation must contain on the line after it, worded as
    BayLing's constrained-translation script words it (see CONSTRAINT_LINES); languages are named as in every other
    prompt of this project (`language_name`: 中文 in a Chinese instruction, where the script took whatever name it
    was given on its command line)."""
    line = CONSTRAINT_LINES[instruction_language].format(terms=", ".join(terms))
    return f"{translation_prompt(src_text, tgt_lang, instruction_language)}\n{line}"
