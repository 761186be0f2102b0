"""Chat completions from any OpenAI-compatible endpoint (vLLM, TGI, SGLang, `transformers serve`, hosted
APIs) through the `openai` SDK, with a sqlite cache that commits every answer as it arrives.

The SDK owns the HTTP side: timeouts, and retries with exponential backoff and jitter on connection
errors, 408, 409, 429 and 5xx (honouring Retry-After); other 4xx answers are not retried. What this
module adds is what the SDK has no notion of: bounded concurrency over a whole batch, de-duplication
of identical requests, and the cache, keyed by the request's hash and committed before the next answer
is awaited, so a run killed half way re-asks nothing it already has. The API key is read from the
environment variable the params name and is never written anywhere.
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
from typing import Any, Protocol

log = logging.getLogger(__name__)

Request = Sequence[tuple[str, str]]  # (role, content) pairs


class EndpointParams(Protocol):
    """What a params section must say about an endpoint (synthesize.teacher, evaluate.instructions.judge)."""

    base_url: str
    model: str
    api_key_env: str | None
    max_concurrency: int
    timeout_s: float
    max_retries: int
    max_tokens: int


@dataclass(frozen=True)
class ChatSettings:
    base_url: str
    model: str
    api_key_env: str | None = None
    max_concurrency: int = 4
    timeout_s: float = 60.0
    max_retries: int = 4
    temperature: float = 0.0
    max_tokens: int = 256
    stop: tuple[str, ...] = ()


def settings_from(params: EndpointParams) -> ChatSettings:
    return ChatSettings(
        base_url=params.base_url, model=params.model, api_key_env=params.api_key_env,
        max_concurrency=params.max_concurrency, timeout_s=params.timeout_s, max_retries=params.max_retries,
        max_tokens=params.max_tokens,
    )


def request_payload(settings: ChatSettings, messages: Request) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model": settings.model,
        "messages": [{"role": role, "content": content} for role, content in messages],
        "temperature": settings.temperature,
        "max_tokens": settings.max_tokens,
    }
    if settings.stop:
        payload["stop"] = list(settings.stop)
    return payload


def request_key(payload: dict[str, Any], endpoint: str) -> str:
    """The cache key of a request to `endpoint`: two servers may call different models by the same name (the
    default `teacher`), so a reply is remembered for the endpoint that gave it."""
    keyed = {"endpoint": endpoint.rstrip("/"), **payload}
    return hashlib.sha256(json.dumps(keyed, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


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
class ChatStats:
    requested: int = 0  # distinct requests sent (after the cache and de-duplication)
    cache_hits: int = 0
    completed: int = 0
    failed: int = 0
    retries: int = 0  # HTTP attempts beyond the first of each request, as the SDK made them
    errors: dict[str, int] = field(default_factory=dict)  # why requests finally failed, by error type

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in vars(self).items() if isinstance(v, int)}


def _client(settings: ChatSettings, attempts: list[int]) -> Any:
    import httpx
    from openai import AsyncOpenAI

    async def count_attempt(request: httpx.Request) -> None:
        attempts[0] += 1

    api_key = os.environ.get(settings.api_key_env) if settings.api_key_env else None
    return AsyncOpenAI(
        base_url=settings.base_url,
        api_key=api_key or "no-key",  # the SDK insists on a key; local servers ignore it
        max_retries=settings.max_retries,
        timeout=settings.timeout_s,
        http_client=httpx.AsyncClient(event_hooks={"request": [count_attempt]}),
    )


async def _complete_all(
    settings: ChatSettings, payloads: list[dict[str, Any]], cache: ResponseCache | None, stats: ChatStats
) -> list[str | None]:
    import openai

    results: list[str | None] = [None] * len(payloads)
    pending: dict[str, list[int]] = {}
    for i, payload in enumerate(payloads):
        key = request_key(payload, settings.base_url)
        cached = cache.get(key) if cache is not None else None
        if cached is not None:
            results[i] = cached
            stats.cache_hits += 1
        else:
            pending.setdefault(key, []).append(i)
    if not pending:
        return results
    limit = asyncio.Semaphore(settings.max_concurrency)
    attempts, sent = [0], [0]
    client = _client(settings, attempts)

    async def run(key: str, indices: list[int]) -> None:
        async with limit:
            stats.requested += 1
            sent[0] += 1
            payload = payloads[indices[0]]
            try:
                response = await client.chat.completions.create(**payload)
                text = response.choices[0].message.content
            except (openai.OpenAIError, IndexError) as exc:
                stats.failed += 1
                kind = type(exc).__name__
                stats.errors[kind] = stats.errors.get(kind, 0) + 1
                log.warning("chat request to %s failed: %s: %s", settings.base_url, kind, str(exc)[:200])
                return
            if text is None:
                stats.failed += 1
                stats.errors["EmptyReply"] = stats.errors.get("EmptyReply", 0) + 1
                return
            if cache is not None:
                cache.put(key, text)
            stats.completed += 1
            for i in indices:
                results[i] = text

    try:
        await asyncio.gather(*(run(key, indices) for key, indices in pending.items()))
    finally:
        await client.close()
    stats.retries += attempts[0] - sent[0]
    return results


def complete(
    settings: ChatSettings, requests: Sequence[Request], cache: ResponseCache | None, stats: ChatStats,
    max_tokens: Sequence[int] | None = None,
) -> list[str | None]:
    """Completions for each request (None where the endpoint failed), from the cache where possible; `max_tokens`
    gives each request its own limit instead of the settings' one."""
    payloads = [request_payload(settings, messages) for messages in requests]
    if max_tokens is not None:
        for payload, limit in zip(payloads, max_tokens, strict=True):
            payload["max_tokens"] = int(limit)
    return asyncio.run(_complete_all(settings, payloads, cache, stats))


def ask(params: EndpointParams, requests: Sequence[Request], cache_path: Path) -> tuple[list[str | None], ChatStats]:
    """Send every request to the endpoint the params describe, through the cache file at `cache_path`."""
    cache = ResponseCache(cache_path)
    stats = ChatStats()
    try:
        replies = complete(settings_from(params), requests, cache, stats)
    finally:
        cache.close()
    return replies, stats
