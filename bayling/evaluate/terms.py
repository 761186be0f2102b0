"""Term usage on lexically constrained test sets: how many of the terms an item asks for its translation contains.

BayLing 1 (arXiv 2306.10968) scores its constrained translation sets for translation quality and for how often
the required terms are used; its repository (ictnlp/BayLing, exp/constrained_translation) keeps the outputs but no
script that counts them, so the counting here is this project's, as plainly as it can be put:

- a term is used when it appears in the output exactly as written: a case-sensitive substring, for Chinese and
  English terms alike (no lowercasing, no word boundaries, no inflection). The English term "I" is therefore found
  in "It", and "Is" in "Island"; a looser match would credit outputs with terms they do not use as asked;
- both sides have their runs of whitespace collapsed first, as evaluate scores outputs whitespace-collapsed
  (bayling.models.generation.clean_output), so a term is never missed for a doubled space;
- a term listed twice for one item is asked for, and counted, twice (BayLing's files list a few so).

Two figures per direction: `term_usage`, every term found over every term asked for (pooled over items), and
`term_usage_items`, the mean over items of each item's own share (an item asking for one term weighs as much as
one asking for three). Both are shares from 0 to 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bayling.core.errors import PipelineError


def _collapsed(text: str) -> str:
    return " ".join(text.split())


def used(term: str, output: str) -> bool:
    """Whether `output` contains `term` as written (case-sensitive), whitespace runs collapsed in both."""
    return _collapsed(term) in _collapsed(output)


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
