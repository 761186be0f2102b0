"""Quality filters for parallel text: Unicode script checks, length-ratio bounds, normalised dedup keys,
and optional offline language identification."""

from __future__ import annotations

import bisect
import hashlib
import importlib.util
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import cache

from bayling.languages import get_language

# Unicode blocks per ISO 15924 script, enough to tell FLORES-200's scripts apart.
_RANGES: dict[str, list[tuple[int, int]]] = {
    "Latn": [(0x41, 0x5A), (0x61, 0x7A), (0xC0, 0xD6), (0xD8, 0xF6), (0xF8, 0x24F), (0x250, 0x2AF),
             (0x1E00, 0x1EFF), (0x2C60, 0x2C7F), (0xA720, 0xA7FF), (0xAB30, 0xAB6F), (0xFF21, 0xFF3A), (0xFF41, 0xFF5A)],
    "Grek": [(0x370, 0x3FF), (0x1F00, 0x1FFF)],
    "Cyrl": [(0x400, 0x52F), (0x1C80, 0x1C8F), (0x2DE0, 0x2DFF), (0xA640, 0xA69F)],
    "Armn": [(0x530, 0x58F), (0xFB13, 0xFB17)],
    "Hebr": [(0x590, 0x5FF), (0xFB1D, 0xFB4F)],
    "Arab": [(0x600, 0x6FF), (0x750, 0x77F), (0x870, 0x8FF), (0xFB50, 0xFDFF), (0xFE70, 0xFEFF)],
    "Deva": [(0x900, 0x97F), (0xA8E0, 0xA8FF)],
    "Beng": [(0x980, 0x9FF)],
    "Guru": [(0xA00, 0xA7F)],
    "Gujr": [(0xA80, 0xAFF)],
    "Orya": [(0xB00, 0xB7F)],
    "Taml": [(0xB80, 0xBFF)],
    "Telu": [(0xC00, 0xC7F)],
    "Knda": [(0xC80, 0xCFF)],
    "Mlym": [(0xD00, 0xD7F)],
    "Sinh": [(0xD80, 0xDFF)],
    "Thai": [(0xE00, 0xE7F)],
    "Laoo": [(0xE80, 0xEFF)],
    "Tibt": [(0xF00, 0xFFF)],
    "Mymr": [(0x1000, 0x109F), (0xA9E0, 0xA9FF), (0xAA60, 0xAA7F)],
    "Geor": [(0x10A0, 0x10FF), (0x1C90, 0x1CBF), (0x2D00, 0x2D2F)],
    "Hang": [(0x1100, 0x11FF), (0x3130, 0x318F), (0xA960, 0xA97F), (0xAC00, 0xD7AF), (0xD7B0, 0xD7FF)],
    "Ethi": [(0x1200, 0x139F), (0x2D80, 0x2DDF), (0xAB00, 0xAB2F)],
    "Khmr": [(0x1780, 0x17FF), (0x19E0, 0x19FF)],
    "Olck": [(0x1C50, 0x1C7F)],
    "Tfng": [(0x2D30, 0x2D7F)],
    "Hira": [(0x3040, 0x309F)],
    "Kana": [(0x30A0, 0x30FF), (0x31F0, 0x31FF), (0xFF66, 0xFF9F)],
    "Hani": [(0x2E80, 0x2FDF), (0x3005, 0x3007), (0x3021, 0x3029), (0x3038, 0x303B), (0x3400, 0x4DBF),
             (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x3134F)],
}

# What each FLORES-200 script suffix may be written with.
_ACCEPTED = {"Hans": {"Hani"}, "Hant": {"Hani"}, "Jpan": {"Hani", "Hira", "Kana"}, "Kore": {"Hang", "Hani"}}


@cache
def _index() -> tuple[list[int], list[int], list[str]]:
    spans = sorted((lo, hi, script) for script, ranges in _RANGES.items() for lo, hi in ranges)
    return [s[0] for s in spans], [s[1] for s in spans], [s[2] for s in spans]


def char_script(ch: str) -> str | None:
    starts, ends, scripts = _index()
    cp = ord(ch)
    i = bisect.bisect_right(starts, cp) - 1
    return scripts[i] if i >= 0 and cp <= ends[i] else None


# A logographic or syllabic character carries about as much as three alphabetic letters; weighting
# them keeps Chinese with a few Latin acronyms ("COVID-19", "SARS-CoV-2") from reading as Latin.
_DENSE = {"Hani": 3, "Hira": 2, "Kana": 2, "Hang": 3}


@cache
def _letter_script(ch: str) -> str | None:
    """The script of a letter or combining mark ("Zyyy" if unknown); None for anything else."""
    if unicodedata.category(ch)[0] not in ("L", "M"):
        return None
    return char_script(ch) or "Zyyy"


def script_profile(text: str) -> Counter:
    """Weighted counts of letters (and combining marks) per script; digits, punctuation and spaces are ignored."""
    counts: Counter = Counter(map(_letter_script, text))
    counts.pop(None, None)
    for script, weight in _DENSE.items():
        if script in counts:
            counts[script] *= weight
    return counts


@dataclass(frozen=True)
class ScriptCheck:
    ok: bool
    expected: str
    share: float
    dominant: str | None


def check_script(text: str, code: str, min_share: float = 0.5) -> ScriptCheck:
    """Whether at least `min_share` of the letters are in the script the language table gives for `code`."""
    expected = get_language(code).script
    accepted = _ACCEPTED.get(expected, {expected})
    profile = script_profile(text)
    letters = sum(profile.values())
    if letters == 0:
        return ScriptCheck(True, expected, 1.0, None)
    share = sum(profile[s] for s in accepted) / letters
    dominant = profile.most_common(1)[0][0]
    return ScriptCheck(share >= min_share, expected, share, dominant)


def length_ratio(a: str, b: str) -> float:
    """Ratio of UTF-8 byte lengths, larger over smaller: bytes even out alphabetic and ideographic scripts."""
    la, lb = len(a.encode("utf-8")), len(b.encode("utf-8"))
    if min(la, lb) == 0:
        return float("inf")
    return max(la, lb) / min(la, lb)


@cache
def _kept_in_key(ch: str) -> bool:
    return unicodedata.category(ch)[0] in ("L", "M", "N") or ch.isspace()


def normalized_key(text: str) -> str:
    """Case, accent-compatibility, punctuation and whitespace insensitive form, for near-duplicate detection."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join("".join(filter(_kept_in_key, folded)).split())


def digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=12).digest()


def langid_available() -> bool:
    return importlib.util.find_spec("langid") is not None


@cache
def _langid_model():  # type: ignore[no-untyped-def]
    from langid.langid import LanguageIdentifier, model

    return LanguageIdentifier.from_modelstring(model, norm_probs=True)


@dataclass(frozen=True)
class LangIdCheck:
    ok: bool
    predicted: str | None
    probability: float
    supported: bool


def check_langid(text: str, code: str, min_probability: float = 0.5) -> LangIdCheck:
    """Offline language ID (langid.py ships its model). Languages it doesn't know always pass."""
    iso1 = get_language(code).iso639_1
    identifier = _langid_model()
    if iso1 is None or iso1 not in identifier.nb_classes:
        return LangIdCheck(True, None, 0.0, False)
    predicted, probability = identifier.classify(text)
    ok = predicted == iso1 or probability < min_probability
    return LangIdCheck(ok, predicted, float(probability), True)
