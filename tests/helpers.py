"""Small helpers several test modules share (importable because conftest puts tests/ on sys.path)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Encoded:
    input_ids: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.input_ids)


def encode(tokenizer: Any, conversations: Sequence[Sequence[dict[str, str]]], *, end_of_turn: str | None = None,
           loss_on: str = "all") -> list[Encoded]:
    """Token ids and assistant-only labels, the way the tokenize stage makes them (no length limit)."""
    from bayling.tokenize.chat import Renderer, labels_for, tokenize_batch
    from bayling.tokenize.templates import compile_template

    end = end_of_turn or tokenizer.eos_token
    renderer = Renderer(tokenizer, end, compile_template(tokenizer, end))
    return [Encoded(t.input_ids, labels_for(t, loss_on)) for t in tokenize_batch(tokenizer, renderer, conversations)]
