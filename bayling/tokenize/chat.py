"""Conversations to token ids and labels: exact assistant-only loss masks, turn-boundary truncation.

Rendering goes through a template compiled to its literal glue (bayling.tokenize.templates), verified against
the tokenizer's own Jinja renderer on a sample of every batch; if any sample differs, the whole batch
is rendered with Jinja. Tokens come from one batched call into the Rust tokenizer, and labels are
placed with `char_to_token` at each assistant span's two ends, so no per-token Python loop runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from bayling.core.errors import PipelineError
from bayling.core.records import IGNORE_INDEX, Message
from bayling.tokenize.templates import CompiledTemplate, Span

__all__ = ["IGNORE_INDEX", "Renderer", "Tokenized", "assistant_spans", "fit", "labels_for", "tokenize_batch"]
LossOn = Literal["all", "last"]


def render(tokenizer: Any, messages: Sequence[Message], *, add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt)


def assistant_spans(tokenizer: Any, messages: Sequence[Message], end_token: str | None = None) -> tuple[str, list[Span]]:
    """Reference renderer: the conversation through Jinja and each assistant turn's character span.

    A span runs from the first character after the generation prompt to the end of the end-of-turn
    token, so the model learns to stop. It relies on the template being prefix-stable: rendering the
    first k messages must give a prefix of the full text.
    """
    end_token = end_token or tokenizer.eos_token
    full = render(tokenizer, messages)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = render(tokenizer, messages[:i], add_generation_prompt=True)
        through = render(tokenizer, messages[: i + 1])
        if not (full.startswith(prompt) and full.startswith(through) and through.startswith(prompt)):
            raise PipelineError(
                "the chat template renders differently depending on what follows a turn, "
                "so assistant tokens can't be located; choose a prefix-stable template"
            )
        start = len(prompt)
        content_at = through.find(message["content"], start)
        search_from = content_at + len(message["content"]) if content_at >= 0 else start
        end_at = through.find(end_token, search_from) if end_token else -1
        end = end_at + len(end_token) if end_at >= 0 else len(through)
        spans.append((start, end))
    return full, spans


@dataclass(frozen=True)
class Tokenized:
    """A conversation's ids and the token range [start, stop) of each assistant turn (end token included)."""

    input_ids: np.ndarray
    turns: tuple[tuple[int, int], ...]

    def __len__(self) -> int:
        return len(self.input_ids)


class Renderer:
    """Renders conversations with assistant spans: the compiled template when it agrees with Jinja."""

    VERIFY_FIRST = 64
    VERIFY_EVERY = 97

    def __init__(self, tokenizer: Any, end_of_turn: str, compiled: CompiledTemplate | None) -> None:
        self.tokenizer = tokenizer
        self.end_of_turn = end_of_turn
        self.compiled = compiled
        self.fast_batches = 0
        self.slow_batches = 0

    def render_batch(self, conversations: Sequence[Sequence[Message]]) -> list[tuple[str, list[Span]]]:
        if self.compiled is not None:
            try:
                rendered = [self.compiled.render(messages) for messages in conversations]
                sample = list(range(min(self.VERIFY_FIRST, len(conversations)))) + list(
                    range(self.VERIFY_FIRST, len(conversations), self.VERIFY_EVERY)
                )
                if all(rendered[i] == assistant_spans(self.tokenizer, conversations[i], self.end_of_turn) for i in sample):
                    self.fast_batches += 1
                    return rendered
            except KeyError:
                pass
        self.slow_batches += 1
        return [assistant_spans(self.tokenizer, messages, self.end_of_turn) for messages in conversations]


def tokenize_batch(tokenizer: Any, renderer: Renderer, conversations: Sequence[Sequence[Message]]) -> list[Tokenized]:
    """Token ids and assistant turn ranges for a batch, with one call into the Rust tokenizer."""
    rendered = renderer.render_batch(conversations)
    encodings = tokenizer.backend_tokenizer.encode_batch([text for text, _ in rendered], add_special_tokens=False)
    out = []
    for (_, spans), encoding in zip(rendered, encodings):
        ids = np.asarray(encoding.ids, dtype=np.int32)
        turns = []
        for start, stop in spans:
            first = _token_at(encoding, start, forward=True, limit=stop)
            last = _token_at(encoding, stop - 1, forward=False, limit=start)
            if first is not None and last is not None and last >= first:
                turns.append((first, last + 1))
        out.append(Tokenized(ids, tuple(turns)))
    return out


def _token_at(encoding: Any, char: int, *, forward: bool, limit: int) -> int | None:
    """The token covering character `char`; whitespace not covered by a token moves toward `limit`."""
    step = 1 if forward else -1
    while (char < limit) if forward else (char >= limit):
        token = encoding.char_to_token(char)
        if token is not None:
            return token
        char += step
    return None


def fit(item: Tokenized, max_len: int, overlong: Literal["drop", "truncate"]) -> tuple[Tokenized | None, str]:
    """Keep a conversation whole, cut it after its last assistant turn that fits, or drop it.

    A cut never falls inside an assistant turn. Returns the result and "kept", "truncated" or "dropped".
    """
    if len(item) <= max_len:
        return item, "kept"
    if overlong == "truncate":
        fitting = [turn for turn in item.turns if turn[1] <= max_len]
        if fitting:
            stop = fitting[-1][1]
            return Tokenized(item.input_ids[:stop], tuple(fitting)), "truncated"
    return None, "dropped"


def labels_for(item: Tokenized, loss_on: LossOn = "all") -> np.ndarray:
    """-100 everywhere except the assistant turns (all of them, or the last one only)."""
    labels = np.full(len(item), IGNORE_INDEX, dtype=np.int32)
    turns = item.turns if loss_on == "all" else item.turns[-1:]
    for start, stop in turns:
        labels[start:stop] = item.input_ids[start:stop]
    return labels
