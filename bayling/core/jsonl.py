"""JSON and JSON Lines files, written the same way everywhere (UTF-8, no ASCII escaping, atomic JSON)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def dumps_line(row: Any) -> str:
    return json.dumps(row, ensure_ascii=False) + "\n"


def write_jsonl(path: Path, rows: Iterable[Any]) -> int:
    """Write rows (dicts, or objects with to_json) one per line; returns how many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(dumps_line(row.to_json() if hasattr(row, "to_json") else row))
            count += 1
    return count


def iter_jsonl(path: Path) -> Iterator[Any]:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def write_json(path: Path, payload: Any) -> None:
    """Pretty JSON that appears at `path` whole or not at all."""
    from bayling.core.storage import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(payload, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


class RepeatedKeyError(ValueError):
    """A JSON object that gives one key twice: which value was meant is anyone's guess."""


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise RepeatedKeyError(f"repeated key {', '.join(repr(k) for k in repeated)}")
    return dict(pairs)


def loads_strict(text: str) -> Any:
    """json.loads, except that an object repeating a key raises RepeatedKeyError (json.loads keeps the last)."""
    return json.loads(text, object_pairs_hook=_no_repeated_keys)
