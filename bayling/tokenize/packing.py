"""Best-fit-decreasing packing of tokenized conversations into fixed-length rows, with position ids that
restart at every sequence so attention never crosses from one conversation into another.

Written here rather than taken from TRL or datasets: their packers cut conversations at the row
boundary, while these rows hold whole conversations already truncated at a turn boundary, so every
row starts at a sequence start and no reply is split from its prompt.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bayling.core.records import IGNORE_INDEX


def best_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Bins of item indices: longest first, each into the bin whose free space it fills most tightly.

    Free space takes at most capacity + 1 distinct values, so bins are kept in buckets by free space
    with a sorted list of the non-empty ones: each placement costs a bisect, not a scan of the bins.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    by_free: dict[int, list[int]] = {}
    free_values: list[int] = []
    for i in order:
        size = lengths[i]
        if size > capacity:
            raise ValueError(f"item {i} of length {size} exceeds the capacity {capacity}")
        at = bisect.bisect_left(free_values, size)
        if at < len(free_values):
            free = free_values[at]
            bucket = by_free[free]
            b = bucket.pop()
            if not bucket:
                del by_free[free]
                free_values.pop(at)
        else:
            b, free = len(bins), capacity
            bins.append([])
        bins[b].append(i)
        left = free - size
        if left > 0:
            if left not in by_free:
                by_free[left] = []
                bisect.insort(free_values, left)
            by_free[left].append(b)
    return bins


@dataclass(frozen=True)
class PackedRow:
    input_ids: np.ndarray
    labels: np.ndarray
    position_ids: np.ndarray
    sequences: int


def pack_rows(items: Sequence[tuple[np.ndarray, np.ndarray]], bins: Sequence[Sequence[int]]) -> list[PackedRow]:
    """Concatenate each bin's (ids, labels); positions restart at 0 and each sequence's first label is
    ignored, so no token is ever predicted from the previous conversation."""
    rows = []
    for members in bins:
        ids = np.concatenate([items[i][0] for i in members])
        labels = np.concatenate([items[i][1] for i in members]).copy()
        positions = np.concatenate([np.arange(len(items[i][0]), dtype=np.int32) for i in members])
        labels[positions == 0] = IGNORE_INDEX
        rows.append(PackedRow(ids, labels, positions, len(members)))
    return rows
