"""Which outputs are not in the language they were asked for.

A model that copies its English source into an English-to-Swahili reply scores well above a model that
writes bad Swahili: chrF++ rewards the names, numbers and loanwords the copy shares with the reference.
The default run's fine-tuned SmolLM2 did exactly that for 24 of 50 segments, and the direction showed the
largest gain of the six. So each direction also reports the share of its non-empty outputs that
language identification (langid.py, which the project already uses to screen synthesized data) places
in the source language. That share is a flag beside the score, not a score: langid.py is unreliable on
a few words, which is why only a confident, source-language verdict counts, and a language langid.py
does not know is not checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from bayling.core.languages import get_language

MIN_PROBABILITY = 0.9  # langid.py's normalised probability needed to call an output the source language
MIN_CHARACTERS = 20  # shorter outputs are not judged: identification of a few words is a guess


@cache
def _identifier() -> Any:
    from langid.langid import LanguageIdentifier, model

    return LanguageIdentifier.from_modelstring(model, norm_probs=True)


def _label(code: str) -> str | None:
    """langid.py's label for a FLORES-200 code (its ISO 639-1 code), or None where langid.py has none."""
    iso = get_language(code).iso639_1
    return iso if iso and iso in _identifier().nb_classes else None


@dataclass(frozen=True)
class SourceLanguageShare:
    judged: int  # outputs long enough to identify
    in_source: int  # of those, confidently in the source language

    @property
    def share(self) -> float:
        return self.in_source / self.judged if self.judged else 0.0


def in_source_language(hypotheses: Sequence[str], src_lang: str, tgt_lang: str) -> SourceLanguageShare | None:
    """How many outputs of a src_lang -> tgt_lang direction are confidently in src_lang; None when langid.py cannot
    tell the two apart (it lacks either language, or they share a label)."""
    source, target = _label(src_lang), _label(tgt_lang)
    if source is None or target is None or source == target:
        return None
    identifier = _identifier()
    judged = in_source = 0
    for text in hypotheses:
        if len(text.strip()) < MIN_CHARACTERS:
            continue
        judged += 1
        label, probability = identifier.classify(text)
        in_source += label == source and probability >= MIN_PROBABILITY
    return SourceLanguageShare(judged, in_source)
