"""Conversations to token ids and labels: exact assistant-only loss masks, turn-boundary truncation.

Rendering goes through a template compiled to its literal glue (bayling.tokenize.templates) when the
template provably prints message contents verbatim, which makes the compiled form exact for every
row; otherwise through the tokenizer's own Jinja renderer. Tokens come from one batched call into the Rust tokenizer, and labels are
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
    """Renders conversations with their assistant spans: through the compiled template where the template
    is proven content-independent, through Jinja otherwise (and for role sequences it cannot compile).

    The first conversation of every new sequence of roles is also rendered through Jinja and compared,
    one render per kind of conversation, so a mistake in the compilation itself cannot pass unseen.
    """

    def __init__(self, tokenizer: Any, end_of_turn: str, compiled: CompiledTemplate | None) -> None:
        self.tokenizer = tokenizer
        self.end_of_turn = end_of_turn
        self.compiled = compiled
        self._checked: dict[tuple[str, ...], bool] = {}
        self.fast_batches = 0
        self.slow_batches = 0

    def _render(self, messages: Sequence[Message]) -> tuple[tuple[str, list[Span]], bool]:
        roles = tuple(m["role"] for m in messages)
        if self.compiled is not None and self._checked.get(roles, True):
            try:
                rendered = self.compiled.render(messages)
            except KeyError:
                self._checked[roles] = False
            else:
                if roles not in self._checked:
                    self._checked[roles] = rendered == assistant_spans(self.tokenizer, messages, self.end_of_turn)
                if self._checked[roles]:
                    return rendered, True
        return assistant_spans(self.tokenizer, messages, self.end_of_turn), False

    def render_batch(self, conversations: Sequence[Sequence[Message]]) -> list[tuple[str, list[Span]]]:
        results = [self._render(messages) for messages in conversations]
        if all(fast for _, fast in results):
            self.fast_batches += 1
        else:
            self.slow_batches += 1
        return [rendered for rendered, _ in results]


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


# Replies that start every way a reply can once its leading whitespace is gone (see strip_reply): letters
# of several scripts, digits, punctuation, markup, emoji. Tokenizers split differently at these starts.
_PROBE_REPLIES = ("Bonjour tout le monde.", "你好，世界。", "1234 is a number", "«Guillemets».", "Привет, мир.", "- a list item",
                  "**bold** text", "élan", "(parenthesis)", "😀 emoji", "```code```", "Done.")


def strip_replies(messages: Sequence[Message]) -> tuple[list[Message], int]:
    """The conversation with leading whitespace removed from every reply, and how many replies had some.

    A template's text before a reply usually ends in a newline; a reply that starts with whitespace
    would merge with it into one token on tokenizers that keep runs of newlines whole (Llama-3, Qwen2,
    GPT-4-style pre-tokenizers), so training would start the reply from a token the inference prompt
    never ends with. Generation output is stripped the same way before it is scored.
    """
    out, stripped = [], 0
    for m in messages:
        if m["role"] == "assistant" and m["content"][:1].isspace():
            out.append({**m, "content": m["content"].lstrip()})
            stripped += 1
        else:
            out.append(m)
    return out, stripped


def prompt_alignment_problem(tokenizer: Any, renderer: Renderer) -> str | None:
    """Why training would feed the model other ids before a reply than inference does, or None.

    Inference tokenizes `apply_chat_template(history, add_generation_prompt=True)` as one string;
    training tokenizes the whole conversation. With some template and tokenizer pairs the two split
    differently where a reply begins (a pre-tokenizer that keeps "\\n\\n" whole at the end of a string
    but splits it before a letter), so the model would learn to continue a prompt it never sees.
    Checked on probe conversations of three turns whose replies start in every common way.
    """
    users = ("Translate this, please.", "And now this one?", "Once more.")
    probes = []
    for k in range(0, len(_PROBE_REPLIES), 3):
        replies = (_PROBE_REPLIES[k:k + 3] + _PROBE_REPLIES[:3])[:3]
        chat = [m for user, reply in zip(users, replies)
                for m in ({"role": "user", "content": user}, {"role": "assistant", "content": reply})]
        probes += [chat, [{"role": "system", "content": "You translate."}] + chat]
    for messages, item in zip(probes, tokenize_batch(tokenizer, renderer, probes)):
        replies = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        for (start, _), index in zip(item.turns, replies):
            prompt = tokenizer.apply_chat_template(messages[:index], add_generation_prompt=True, tokenize=True, return_dict=False)
            trained = [int(t) for t in item.input_ids[:start]]
            if trained != list(prompt):
                at = next((i for i, (a, b) in enumerate(zip(trained, prompt)) if a != b), min(len(trained), len(prompt)))
                window = slice(max(0, at - 2), at + 3)
                train_tokens = " ".join(tokenizer.convert_ids_to_tokens(trained[window]))
                prompt_tokens = " ".join(tokenizer.convert_ids_to_tokens(list(prompt)[window]))
                return (f"before the reply {messages[index]['content']!r}, training would feed [{train_tokens}] where inference "
                        f"feeds [{prompt_tokens}]")
    return None
