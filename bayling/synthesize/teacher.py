"""The synthesis teacher: replies that the data cannot give (register changes, explanations, shortened
translations, general chats carried into other languages), asked through the shared chat client and
checked before they become training data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bayling.config.types import EndpointParams
from bayling.core.chat_client import Request, ask
from bayling.synthesize import quality
from bayling.synthesize.followups import length_in_units


def verify_reply(text: str | None, checks: Mapping[str, Any]) -> str | None:
    """Why a teacher reply is unusable, or None if it passes the turn's checks."""
    if text is None or not text.strip():
        return "no reply"
    if "script" in checks and not quality.check_script(text, checks["script"]).ok:
        return "reply in the wrong script"
    if "max_units" in checks and length_in_units(text, checks.get("script", "eng_Latn")) > checks["max_units"]:
        return "reply over the length limit"
    return None


def ask_teacher(params: EndpointParams, requests: Sequence[Request], root: Path) -> tuple[list[str | None], dict[str, int]]:
    """The teacher's replies (None where it failed) and the request counts for the data card."""
    replies, stats = ask(params, requests, root / params.cache_path)
    return replies, stats.counts()
