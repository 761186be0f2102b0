"""Seeded, order-independent draws: every random choice in the pipeline is a function of the seed and
the thing it is about (a row id, a conversation id), never of how many came before it. That is what
keeps outputs identical whatever the shard size, the number of Dask workers or the row order."""

from __future__ import annotations

import hashlib
import random


def seeded_digest(seed: int, *keys: str) -> bytes:
    """sha256 over the seed and the keys, NUL-separated."""
    return hashlib.sha256("\x00".join([str(seed), *keys]).encode()).digest()


def row_rng(seed: int, row_id: str, salt: str = "") -> random.Random:
    """A generator for one row (and purpose, `salt`), independent of every other row's draws."""
    return random.Random(seeded_digest(seed, salt, row_id))


def unit_draw(seed: int, *keys: str) -> float:
    """A uniform number in [0, 1) fixed by the seed and the keys."""
    return int.from_bytes(seeded_digest(seed, *keys)[:8], "big") / 2**64


def coin(seed: int, probability: float, *keys: str) -> bool:
    """True with `probability`, deterministically for these keys; 0 and 1 never draw."""
    if probability >= 1.0:
        return True
    if probability <= 0.0:
        return False
    return unit_draw(seed, *keys) < probability


def rank_key(seed: int, key: str) -> str:
    """A sort key that shuffles items by seed alone: sorting by it is a seeded permutation."""
    return seeded_digest(seed, key).hex()
