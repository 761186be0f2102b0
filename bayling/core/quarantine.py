"""Quarantine records: a rejected input line or chat, with its file, line, field and reason.

Every stage that reads user data accounts for it this way, so rows in = rows kept + rows quarantined
holds everywhere and a user can find each rejected line. No library offers this accounting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Problem:
    field: str | None
    reason: str


@dataclass(frozen=True)
class Quarantined:
    source: str
    file: str
    line: int
    problems: tuple[Problem, ...]
    raw: str

    def to_json(self) -> dict[str, Any]:
        first = self.problems[0]
        return {
            "source": self.source,
            "file": self.file,
            "line": self.line,
            "field": first.field,
            "reason": first.reason,
            "problems": [{"field": p.field, "reason": p.reason} for p in self.problems],
            "raw": self.raw,
        }

    def describe(self) -> str:
        parts = "; ".join(f"{p.field}: {p.reason}" if p.field else p.reason for p in self.problems)
        return f"{self.file}:{self.line}: {parts}"
