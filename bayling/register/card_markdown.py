"""Markdown pieces the model card's sections share: language and direction names, tables, counts and numbers."""

from __future__ import annotations

from typing import Any

from bayling.core.languages import get_language, is_known


def language_label(code: str) -> str:
    return f"{get_language(code).name} (`{code}`)" if is_known(code) else f"`{code}`"


def direction_label(direction: str) -> str:
    if direction == "avg":
        return "macro average"
    return " → ".join(get_language(c).name if is_known(c) else c for c in direction.split("-"))


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def counts(mapping: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(mapping.items(), key=lambda kv: (-kv[1], kv[0]))) or "none"


def number(value: Any, signed: bool = False) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "–"
    return f"{value:+.2f}" if signed else f"{value:.2f}"
