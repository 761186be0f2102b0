"""What training data is made of, counted the same way at every stage that changes it: as synthesized, as
tokenize kept it, and as the train steps drew it.

A conversation's category is its mix cell (the `family.group` cell of synthesize.mix that it counts
towards, e.g. `any.zh`), its task family (general, translation, interactive) and the language its replies
are taught in. A tally holds conversations and supervised tokens (the tokens the loss is computed on) per
category, so each stage can state its shares along any of the three axes, in either unit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Ratios = Mapping[str, Mapping[str, float]]  # family (or "any") -> language group -> weight
Category = tuple[str, str, str]  # (mix cell, task family, reply language)
Axis = Literal["cell", "task", "language"]
Unit = Literal["conversations", "supervised_tokens"]
AXES: tuple[Axis, ...] = ("cell", "task", "language")
UNITS: tuple[Unit, ...] = ("conversations", "supervised_tokens")
SEPARATOR = "|"  # a category as one string, for a column of the tokenized rows
# the tokenized rows' columns that say, per conversation in a row, its category and its supervised tokens
SEGMENT_COLUMNS = ("mix_category", "mix_supervised")


def mix_cell(family: str, group: str, ratios: Ratios) -> tuple[str, str] | None:
    if group in ratios.get(family, {}):
        return family, group
    if group in ratios.get("any", {}):
        return "any", group
    return None


def cell_label(family: str, group: str, ratios: Ratios) -> str:
    """The mix cell that data of (family, group) counts towards, as 'family.group'."""
    cell = mix_cell(family, group, ratios)
    return f"{cell[0]}.{cell[1]}" if cell else f"{family}.{group} (not requested)"


def category_of(meta: Mapping[str, Any], ratios: Ratios) -> str:
    """A synthesized conversation's category (from its meta) as one string: 'cell|family|language'."""
    return SEPARATOR.join((cell_label(meta["family"], meta["group"], ratios), meta["family"], meta["tgt_lang"]))


def requested_shares(ratios: Ratios) -> dict[str, float]:
    """synthesize.mix.ratios as shares of 1 per cell label."""
    total = sum(w for groups in ratios.values() for w in groups.values())
    return {f"{f}.{g}": w / total for f, groups in ratios.items() for g, w in groups.items() if w > 0 and total > 0}


@dataclass
class Tally:
    """Conversations and supervised tokens per category ('cell|family|language')."""

    conversations: Counter = field(default_factory=Counter)
    supervised_tokens: Counter = field(default_factory=Counter)

    def add(self, category: str, conversations: int = 1, supervised_tokens: int = 0) -> None:
        self.conversations[category] += conversations
        self.supervised_tokens[category] += supervised_tokens

    def update(self, other: Tally) -> None:
        self.conversations.update(other.conversations)
        self.supervised_tokens.update(other.supervised_tokens)

    def totals(self, unit: Unit) -> float:
        return sum(getattr(self, unit).values())

    def shares(self, axis: Axis, unit: Unit) -> dict[str, float]:
        """Shares of 1 along one axis, in one unit (empty when the tally is)."""
        counts: Counter = Counter()
        position = AXES.index(axis)
        for category, n in getattr(self, unit).items():
            counts[category.split(SEPARATOR)[position]] += n
        total = sum(counts.values())
        return {key: n / total for key, n in sorted(counts.items())} if total else {}

    def as_json(self) -> list[dict[str, Any]]:
        rows = []
        for category in sorted(set(self.conversations) | set(self.supervised_tokens)):
            cell, task, language = category.split(SEPARATOR)
            rows.append({"cell": cell, "task": task, "language": language, "conversations": int(self.conversations[category]),
                         "supervised_tokens": int(self.supervised_tokens[category])})
        return rows

    @staticmethod
    def from_json(rows: Iterable[Mapping[str, Any]]) -> Tally:
        tally = Tally()
        for row in rows:
            tally.add(SEPARATOR.join((row["cell"], row["task"], row["language"])), int(row["conversations"]),
                      int(row["supervised_tokens"]))
        return tally


def drawn_tally(segments: Any, drawn: Iterable[int]) -> Tally:
    """What rows drawn from a tokenized split hold (a row drawn twice counts twice), from its SEGMENT_COLUMNS
    (`segments`: a `datasets.Dataset` with those columns)."""
    times = Counter(drawn)
    tally = Tally()
    if not times:
        return tally
    rows = sorted(times)
    picked = segments.select(rows)
    for row, categories, supervised in zip(rows, picked["mix_category"], picked["mix_supervised"]):
        for category, tokens in zip(categories, supervised):
            tally.add(category, times[row], times[row] * int(tokens))
    return tally


def row_strata(segments: Any) -> list[list[float]]:
    """Each tokenized row's supervised tokens per mix cell (cells in sorted order), from its SEGMENT_COLUMNS: what
    the train sampler interleaves rows by, so a run's steps draw the cells in the shares the data holds."""
    columns = segments.to_dict()
    cells = sorted({category.split(SEPARATOR)[0] for row in columns["mix_category"] for category in row})
    position = {cell: k for k, cell in enumerate(cells)}
    strata = []
    for categories, supervised in zip(columns["mix_category"], columns["mix_supervised"]):
        weights = [0.0] * len(cells)
        for category, tokens in zip(categories, supervised):
            weights[position[category.split(SEPARATOR)[0]]] += int(tokens)
        strata.append(weights)
    return strata


def share_misses(requested: Mapping[str, float], achieved: Mapping[str, float], tolerance_points: float) -> list[str]:
    """The requested cells whose achieved share lies more than `tolerance_points` (percentage points) away."""
    misses = []
    for cell, share in requested.items():
        got = achieved.get(cell, 0.0)
        if abs(got - share) * 100 > tolerance_points:
            misses.append(f"{cell} {100 * got:.1f}% (requested {100 * share:.1f}%)")
    return misses
