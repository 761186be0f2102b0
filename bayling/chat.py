"""Rendering conversations with a chat template and labelling exactly the assistant tokens."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bayling.errors import PipelineError

IGNORE_INDEX = -100
Message = dict[str, str]


def render(tokenizer: Any, messages: Sequence[Message], *, add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(
        list(messages), tokenize=False, add_generation_prompt=add_generation_prompt
    )


def assistant_spans(tokenizer: Any, messages: Sequence[Message]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span of every assistant turn.

    A span runs from the first character after the generation prompt to the end of the
    end-of-turn token, so the model learns to stop. It relies on the template being
    prefix-stable: rendering the first k messages must give a prefix of the full text.
    """
    full = render(tokenizer, messages)
    end_token = tokenizer.eos_token
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
class Encoded:
    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)


def label_tokens(input_ids: Sequence[int], offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> list[int]:
    """Copy a token id into labels when the token starts inside an assistant span; otherwise IGNORE_INDEX."""
    labels = [IGNORE_INDEX] * len(input_ids)
    k = 0
    for start, end in spans:
        while k < len(offsets) and offsets[k][0] < start:
            k += 1
        while k < len(offsets) and offsets[k][0] < end:
            if offsets[k][1] > offsets[k][0]:
                labels[k] = input_ids[k]
            k += 1
    return labels


def encode_conversations(tokenizer: Any, conversations: Sequence[Sequence[Message]]) -> list[Encoded]:
    """Token ids and assistant-only labels for a batch of conversations (one fast-tokenizer call)."""
    rendered = [assistant_spans(tokenizer, messages) for messages in conversations]
    batch = tokenizer(
        [text for text, _ in rendered],
        add_special_tokens=False,
        return_offsets_mapping=True,
        return_attention_mask=False,
    )
    out = []
    for (_, spans), ids, offsets in zip(rendered, batch["input_ids"], batch["offset_mapping"]):
        out.append(Encoded(list(ids), label_tokens(ids, offsets, spans)))
    return out
