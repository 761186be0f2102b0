"""Term usage on lexically constrained test sets: how many of the terms an item asks for its translation contains.

BayLing 1 (arXiv 2306.10968) scores its constrained translation sets for translation quality and for how often
the required terms are used; its repository (ictnlp/BayLing, exp/constrained_translation) keeps the outputs but no
script that counts them, so the counting here is this project's, as plainly as it can be put:

- a term is used when it appears in the output exactly as written: case-sensitive, no lowercasing, no inflection;
- where a term begins or ends with a Latin letter or a digit, the output must not continue the word there: the
  English term "I" is not found in "It", nor "Is" in "Island", nor "App" in "Apple" (a plain substring would credit
  an output with a term it does not use). A term's Chinese edge needs no boundary, as Chinese writes none:
  "可能会晚" is found inside "餐可能会晚到", and "App 与" inside "通过 App 与他联系";
- both sides have their runs of whitespace collapsed first, as evaluate scores outputs whitespace-collapsed
  (bayling.models.generation.clean_output), so a term is never missed for a doubled space;
- a term listed twice for one item is asked for, and counted, twice (BayLing's files list a few so).

Two figures per direction: `term_usage`, every term found over every term asked for (pooled over items), and
`term_usage_items`, the mean over items of each item's own share (an item asking for one term weighs as much as
one asking for three). Both are shares from 0 to 1.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from bayling.core.errors import PipelineError

_WORD = "A-Za-z0-9\u00c0-\u024f"  # Latin letters (with Latin-1 and Extended-A/B accents) and digits: one word's characters


def _collapsed(text: str) -> str:
    return " ".join(text.split())


@functools.lru_cache(maxsize=8192)
def _pattern(term: str) -> re.Pattern[str]:
    body = re.escape(term)
    before = f"(?<![{_WORD}])" if re.match(f"[{_WORD}]", term) else ""
    after = f"(?![{_WORD}])" if re.match(f"[{_WORD}]", term[-1]) else ""
    return re.compile(before + body + after)


def used(term: str, output: str) -> bool:
    """Whether `output` contains `term` as written (case-sensitive, not inside a longer Latin word), whitespace runs
    collapsed in both."""
    return _pattern(_collapsed(term)).search(_collapsed(output)) is not None


def found_terms(terms: Sequence[str], output: str) -> list[bool]:
    """For each term asked for, in order, whether the output uses it."""
    return [used(term, output) for term in terms]


@dataclass(frozen=True)
class TermUsage:
    """One direction's term usage: terms found and asked for, pooled, and the mean of the items' own shares."""

    found: int
    asked: int
    items: int
    item_mean: float  # mean over items of (terms found / terms asked) for that item

    @property
    def total(self) -> float:
        """Every term found over every term asked for."""
        return self.found / self.asked


def term_usage(terms_per_item: Sequence[Sequence[str]], outputs: Sequence[str]) -> TermUsage:
    """Term usage of `outputs`, output k for the terms of item k; every item must ask for at least one term."""
    if len(terms_per_item) != len(outputs):
        raise PipelineError(f"term usage: {len(outputs)} outputs for {len(terms_per_item)} items")
    if not outputs:
        raise PipelineError("term usage: no items")
    found = asked = 0
    shares = []
    for position, (terms, output) in enumerate(zip(terms_per_item, outputs), start=1):
        if not terms:
            raise PipelineError(f"term usage: item {position} asks for no term")
        hits = sum(found_terms(terms, output))
        found, asked = found + hits, asked + len(terms)
        shares.append(hits / len(terms))
    return TermUsage(found, asked, len(outputs), sum(shares) / len(shares))
