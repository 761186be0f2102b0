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


# Layer kinds whose attention honours the per-sequence boundaries of a packed row (block-diagonal masks, or
# FlashAttention's varlen kernel). Recurrent, linear-attention and convolution layers carry a state from one
# token to the next instead, so a packed row would leak every conversation's state into the next one.
ATTENTION_LAYER_TYPES = frozenset({"full_attention", "sliding_attention", "chunked_attention"})
RECURRENT_MODEL_TYPES = frozenset({"mamba", "mamba2", "falcon_mamba", "rwkv", "recurrent_gemma", "xlstm", "lfm2", "lfm2_moe",
                                   "lfm2_vl", "lfm3", "jamba", "bamba", "zamba", "zamba2", "falcon_h1", "granitemoehybrid",
                                   "nemotron_h", "qwen3_next", "minimax", "kimi_linear", "olmo_hybrid", "bailing_hybrid"})


def packing_refusal(config: object) -> str | None:
    """Why packed rows would let conversations see each other in this architecture, or None if they can't."""
    model_type = getattr(config, "model_type", "")
    layer_types = set(getattr(config, "layer_types", None) or [])
    other = sorted(layer_types - ATTENTION_LAYER_TYPES)
    if model_type in RECURRENT_MODEL_TYPES or other:
        kinds = ", ".join(other) if other else "recurrent or linear-attention"
        return (f"tokenize.packing: true cannot be used with model type '{model_type}': its {kinds} layers carry state from one "
                "token to the next, so packed conversations would leak into each other; set tokenize.packing: false")
    return None
