"""Quality filters for parallel text: Unicode script checks (the `regex` module's Script_Extensions
classes), length-ratio bounds, normalised dedup keys, and optional offline language identification."""

from __future__ import annotations

import hashlib
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import regex

from bayling.core.errors import PipelineError
from bayling.core.languages import get_language
from bayling.core.paths import project_root, resolve

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


# Language-ID backends (synthesize.filters.langid_backend): the columns of resources/langid_labels.tsv.
LANGID_BACKENDS = ("langid", "fasttext", "glotlid")


@cache
def langid_labels() -> dict[str, dict[str, tuple[str, ...]]]:
    """FLORES-200 code -> backend -> the labels it accepts (resources/langid_labels.tsv; none: unchecked)."""
    text = resources.files("bayling.synthesize.resources").joinpath("langid_labels.tsv").read_text("utf-8")
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    header = lines[0].split("\t")
    table: dict[str, dict[str, tuple[str, ...]]] = {}
    for line in lines[1:]:
        cells = dict(zip(header, line.split("\t")))
        table[cells["flores"]] = {b: tuple(filter(None, cells.get(b, "").split("|"))) for b in LANGID_BACKENDS}
    return table


class _LangidPy:
    """langid.py: ships its own model."""

    def __init__(self) -> None:
        try:
            from langid.langid import LanguageIdentifier, model
        except ImportError:
            raise PipelineError("synthesize.filters.langid needs langid.py: pip install langid==1.1.6") from None

        self._identifier = LanguageIdentifier.from_modelstring(model, norm_probs=True)
        self.labels = frozenset(self._identifier.nb_classes)

    def classify(self, text: str) -> tuple[str, float]:
        predicted, probability = self._identifier.classify(text)
        return predicted, float(probability)


class _FastTextLid:
    """A local fastText language-ID model (lid.176, GlotLID): labels are __label__xx."""

    def __init__(self, path: Path, backend: str) -> None:
        try:
            import fasttext  # type: ignore[import-not-found]
        except ImportError:
            raise PipelineError(
                f"synthesize.filters.langid_backend: {backend} needs the fastText package: pip install fasttext-wheel==0.9.2"
            ) from None
        try:
            self._model = fasttext.load_model(str(path))
        except ValueError as exc:  # fastText's "has wrong file format!"
            raise PipelineError(f"synthesize.filters.langid_model_path: {path} is not a fastText model ({exc})") from None
        self.labels = frozenset(label.removeprefix("__label__") for label in self._model.get_labels())
        expected = {label for labels in langid_labels().values() for label in labels[backend]}
        if not self.labels & expected:
            raise PipelineError(
                f"synthesize.filters.langid_model_path: {path} has none of the {backend} labels "
                f"(e.g. __label__{sorted(expected)[0]}); is it a {backend} model?"
            )

    def classify(self, text: str) -> tuple[str | None, float]:
        # The bound C++ predict: FastText.predict wraps it in np.array(..., copy=False), which numpy>=2 rejects.
        pairs = self._model.f.predict(" ".join(text.split()) + "\n", 1, 0.0, "replace")
        if not pairs:
            return None, 0.0
        probability, label = pairs[0]
        return label.removeprefix("__label__"), min(1.0, float(probability))


def resolve_langid_model(backend: str, model_path: str | None) -> Path | None:
    if backend == "langid":
        return None
    if not model_path:
        raise PipelineError(f"synthesize.filters.langid_backend: {backend} needs langid_model_path (a local fastText .bin model)")
    path = resolve(model_path, project_root())
    if not path.is_file():
        raise PipelineError(f"synthesize.filters.langid_model_path: {path} not found (the {backend} model, a local fastText .bin file)")
    return path


@cache
def _identifier(backend: str, model_path: str | None) -> _LangidPy | _FastTextLid:
    path = resolve_langid_model(backend, model_path)
    return _LangidPy() if path is None else _FastTextLid(path, backend)


@dataclass(frozen=True)
class LangIdSupport:
    checked: bool
    labels: tuple[str, ...]  # the labels accepted for the language (none: the table has none for this backend)
    reason: str | None  # why it goes unchecked


def langid_support(code: str, backend: str = "langid", model_path: str | None = None) -> LangIdSupport:
    """Whether the backend can check `code`: the table gives it a label and the model has one of them."""
    get_language(code)
    identifier = _identifier(backend, model_path)  # a missing or wrong model fails here, whatever the language
    labels = langid_labels().get(code, {}).get(backend, ())
    if not labels:
        return LangIdSupport(False, (), f"no {backend} label for {code} in langid_labels.tsv")
    if not set(labels) & identifier.labels:
        return LangIdSupport(False, labels, f"the model has no label {'|'.join(labels)}")
    return LangIdSupport(True, labels, None)


@dataclass(frozen=True)
class LangIdCheck:
    ok: bool
    predicted: str | None
    probability: float
    supported: bool
    backend: str = "langid"


def check_langid(
    text: str, code: str, min_probability: float = 0.5, *, backend: str = "langid", model_path: str | None = None
) -> LangIdCheck:
    """Offline language ID with langid.py (ships its model) or a local fastText model (lid.176, GlotLID).
    A segment fails when the backend names another language with at least `min_probability`; languages
    the backend can't check (see langid_support) always pass, with supported=False."""
    support = langid_support(code, backend, model_path)
    if not support.checked:
        return LangIdCheck(True, None, 0.0, False, backend)
    predicted, probability = _identifier(backend, model_path).classify(text)
    ok = predicted in support.labels or probability < min_probability
    return LangIdCheck(ok, predicted, probability, True, backend)
