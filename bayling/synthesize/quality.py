"""Quality filters for parallel text: Unicode script checks (the `regex` module's Script_Extensions
classes), length-ratio bounds, normalised dedup keys, and optional offline language identification."""

from __future__ import annotations

import hashlib
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import cache

import regex

from bayling.core.languages import get_language

# The ISO 15924 scripts a FLORES-200 language can be written in (Hans/Hant/Jpan/Kore are written with
# the character scripts in _ACCEPTED). A letter counts for a script when Unicode's Script_Extensions
# property lists it (the kana prolonged-sound mark is both Hiragana and Katakana); a combining mark
# counts for the letter it follows. A letter shared by several scripts counts for the first one listed,
# so Latin, which shares most, comes last.
SCRIPTS = ("Grek", "Cyrl", "Armn", "Hebr", "Arab", "Deva", "Beng", "Guru", "Gujr", "Orya", "Taml", "Telu", "Knda",
           "Mlym", "Sinh", "Thai", "Laoo", "Tibt", "Mymr", "Geor", "Hang", "Ethi", "Khmr", "Olck", "Tfng", "Hira",
           "Kana", "Hani", "Latn")
UNKNOWN_SCRIPT = "Zyyy"
_RUN = "(?P<{0}>[\\p{{scx={0}}}&&[\\p{{L}}\\p{{M}}]](?:[\\p{{scx={0}}}&&\\p{{L}}]|\\p{{M}})*)"
_SCRIPT_RUNS = regex.compile("|".join(_RUN.format(s) for s in SCRIPTS) + f"|(?P<{UNKNOWN_SCRIPT}>[\\p{{L}}\\p{{M}}])", regex.V1)

# What each FLORES-200 script suffix may be written with.
_ACCEPTED = {"Hans": {"Hani"}, "Hant": {"Hani"}, "Jpan": {"Hani", "Hira", "Kana"}, "Kore": {"Hang", "Hani"}}

# A logographic or syllabic character carries about as much as three alphabetic letters; weighting
# them keeps Chinese with a few Latin acronyms ("COVID-19", "SARS-CoV-2") from reading as Latin.
_DENSE = {"Hani": 3, "Hira": 2, "Kana": 2, "Hang": 3}


def script_profile(text: str) -> Counter:
    """Weighted counts of letters (and combining marks) per script; digits, punctuation and spaces are ignored."""
    counts: Counter = Counter()
    for match in _SCRIPT_RUNS.finditer(text):
        counts[match.lastgroup] += match.end() - match.start()
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
