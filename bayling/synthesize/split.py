"""A held-out split with no leaks: rows that share any segment text (after case and space folding) land
on the same side, so no held-out sentence is ever seen in training."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from bayling.core.records import CorpusRow
from bayling.core.seeding import rank_key


def _segment_digest(text: str) -> int:
    digest = hashlib.blake2b(" ".join(text.casefold().split()).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def split_flags(
    rows: Sequence[tuple[str, Sequence[str]]] | Iterator[tuple[str, Sequence[str]]], heldout_fraction: float, seed: int
) -> np.ndarray:
    """heldout flag per row (in input order) such that no segment text is on both sides of the split.

    Rows sharing a segment are joined (union-find over sorted segment hashes); whole groups are taken
    into heldout in a seeded hash order of their first row id until the fraction is reached.
    """
    ids: list[str] = []
    digests: list[int] = []
    owners: list[int] = []
    for index, (row_id, texts) in enumerate(rows):
        ids.append(row_id)
        for text in texts:
            digests.append(_segment_digest(text))
            owners.append(index)
    n = len(ids)
    parent = np.arange(n, dtype=np.int64)

    def find(i: int) -> int:
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return root

    if digests:
        digest_array = np.asarray(digests, dtype=np.int64)
        owner_array = np.asarray(owners, dtype=np.int64)
        order = np.argsort(digest_array, kind="stable")
        sorted_digests, sorted_owners = digest_array[order], owner_array[order]
        same = np.nonzero(sorted_digests[1:] == sorted_digests[:-1])[0]
        for k in same:
            a, b = find(int(sorted_owners[k])), find(int(sorted_owners[k + 1]))
            if a != b:
                parent[max(a, b)] = min(a, b)
    roots = np.fromiter((find(i) for i in range(n)), dtype=np.int64, count=n)
    group_rows: dict[int, int] = Counter(roots.tolist())
    target = round(heldout_fraction * n)
    if len(group_rows) > 1:
        target = max(target, 1)
    order_key = {root: rank_key(seed, ids[root]) for root in group_rows}
    chosen: set[int] = set()
    taken = 0
    for root in sorted(group_rows, key=order_key.__getitem__):
        if taken >= target or len(group_rows) <= 1:
            break
        chosen.add(root)
        taken += group_rows[root]
    return np.fromiter((r in chosen for r in roots.tolist()), dtype=bool, count=n)


def split_file(rows_path: Path, heldout_fraction: float, seed: int) -> np.ndarray:
    """split_flags for the screened rows of a JSONL file, streamed."""
    with open(rows_path, encoding="utf-8") as handle:
        rows = (CorpusRow.from_json(json.loads(line)) for line in handle)
        return split_flags(((row.id, list(row.texts.values())) for row in rows), heldout_fraction, seed)
