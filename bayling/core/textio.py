"""Reading user text files line by line, as bytes, with the line numbers a user's editor shows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


def iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Physical lines of a file as bytes, 1-based, without their line ending."""
    with open(path, "rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            yield lineno, raw.rstrip(b"\n").rstrip(b"\r")
