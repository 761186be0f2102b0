"""A teacher LLM behind any OpenAI-compatible /v1/chat/completions endpoint, with an on-disk cache.

Requests run concurrently up to a bound, are retried with exponential backoff on timeouts, connection
errors, 429 and 5xx, and each completed answer is committed to a sqlite cache keyed by the request's
hash before the next is awaited, so a re-run after a crash re-issues no completed request. The API key
is read from the environment variable the params name; it is never written anywhere.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class TeacherSettings:
    base_url: str
    model: str
    api_key_env: str | None = None
    max_concurrency: int = 4
    timeout_s: float = 60.0
    max_retries: int = 4
    backoff_s: float = 1.0
    temperature: float = 0.0
    max_tokens: int = 256


def settings_from(params: Any) -> TeacherSettings:
    """TeacherSettings from a params section (synthesize.teacher or evaluate.instructions.judge)."""
    return TeacherSettings(
        base_url=params.base_url, model=params.model, api_key_env=params.api_key_env,
        max_concurrency=params.max_concurrency, timeout_s=params.timeout_s, max_retries=params.max_retries,
        backoff_s=params.backoff_s, max_tokens=params.max_tokens,
    )


def request_payload(settings: TeacherSettings, messages: Sequence[tuple[str, str]]) -> dict[str, Any]:
    return {
        "model": settings.model,
        "messages": [{"role": role, "content": content} for role, content in messages],
        "temperature": settings.temperature,
        "max_tokens": settings.max_tokens,
    }


def request_key(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


class ResponseCache:
    """key -> completion text in a sqlite file; every put is committed at once."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path)
        self._db.execute("CREATE TABLE IF NOT EXISTS completions (key TEXT PRIMARY KEY, text TEXT NOT NULL)")
        self._db.commit()

    def get(self, key: str) -> str | None:
        row = self._db.execute("SELECT text FROM completions WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, text: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO completions (key, text) VALUES (?, ?)", (key, text))
        self._db.commit()

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM completions").fetchone()[0]

    def close(self) -> None:
        self._db.close()


@dataclass
class TeacherStats:
    requested: int = 0
    cache_hits: int = 0
    completed: int = 0
    failed: int = 0
    retries: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items()}


class TeacherError(Exception):
    """The teacher could not answer (after retries, or at all)."""


class TeacherRejected(TeacherError):
    """The endpoint refused the request itself (4xx other than rate limits): retrying won't help."""


async def _one(client: Any, settings: TeacherSettings, payload: dict[str, Any], stats: TeacherStats) -> str:
    import httpx

    url = settings.base_url.rstrip("/") + "/chat/completions"
    for attempt in range(settings.max_retries + 1):
        try:
            response = await client.post(url, json=payload)
            if response.status_code in RETRYABLE_STATUS:
                raise TeacherError(f"HTTP {response.status_code}")
            if response.status_code >= 400:
                # Not retryable: the request itself is wrong. The body may echo the request, never the key.
                raise TeacherRejected(f"HTTP {response.status_code}: {response.text[:200]}")
            body = response.json()
            return body["choices"][0]["message"]["content"]
        except TeacherRejected:
            raise
        except (TeacherError, httpx.TransportError, httpx.TimeoutException, KeyError, ValueError) as exc:
            kind = type(exc).__name__ if not isinstance(exc, TeacherError) else str(exc)
            stats.errors[kind] = stats.errors.get(kind, 0) + 1
            if attempt == settings.max_retries:
                raise TeacherError(f"gave up after {attempt + 1} attempts: {kind}") from None
            stats.retries += 1
            await asyncio.sleep(settings.backoff_s * (2**attempt))
    raise AssertionError("unreachable")


async def _complete_all(
    settings: TeacherSettings, payloads: list[dict[str, Any]], cache: ResponseCache, stats: TeacherStats
) -> list[str | None]:
    import httpx

    results: list[str | None] = [None] * len(payloads)
    pending: dict[str, list[int]] = {}
    for i, payload in enumerate(payloads):
        key = request_key(payload)
        cached = cache.get(key)
        if cached is not None:
            results[i] = cached
            stats.cache_hits += 1
        else:
            pending.setdefault(key, []).append(i)
    if not pending:
        return results
    headers = {"Content-Type": "application/json"}
    api_key = os.environ.get(settings.api_key_env) if settings.api_key_env else None
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    limit = asyncio.Semaphore(settings.max_concurrency)
    timeout = httpx.Timeout(settings.timeout_s)

    async with httpx.AsyncClient(headers=headers, timeout=timeout) as client:

        async def run(key: str, indices: list[int]) -> None:
            async with limit:
                stats.requested += 1
                try:
                    text = await _one(client, settings, payloads[indices[0]], stats)
                except TeacherError as exc:
                    stats.failed += 1
                    log.warning("teacher request failed: %s", exc)
                    return
                cache.put(key, text)
                stats.completed += 1
                for i in indices:
                    results[i] = text

        await asyncio.gather(*(run(key, indices) for key, indices in pending.items()))
    return results


def complete(
    settings: TeacherSettings, requests: Sequence[Sequence[tuple[str, str]]], cache: ResponseCache, stats: TeacherStats
) -> list[str | None]:
    """Completions for each request (None where the teacher failed), from the cache where possible."""
    payloads = [request_payload(settings, messages) for messages in requests]
    return asyncio.run(_complete_all(settings, payloads, cache, stats))
