"""Batches for the Trainer: right-padded rows through transformers' DataCollatorForSeq2Seq, and packed
rows, whose conversations must never attend to one another.

The packed collator is written here because transformers' DataCollatorWithFlattening treats every
feature as one sequence and numbers its positions from 0, while a packed row already holds several
conversations whose position ids restart at each one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bayling.core.records import IGNORE_INDEX


def padding_collator(tokenizer: Any) -> Any:
    """Right-pads input ids with the pad id, labels with IGNORE_INDEX and the attention mask with 0."""
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=IGNORE_INDEX, return_tensors="pt")


@dataclass(frozen=True)
class PackedCollator:
    """Batches packed rows: no attention mask, so transformers builds a block-diagonal causal mask from the
    restarting position ids (and FlashAttention takes the varlen path). Padding is its own sequence."""

    pad_token_id: int

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        input_ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
        positions = torch.arange(width, dtype=torch.long).repeat(len(features), 1)
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            input_ids[row, :n] = torch.as_tensor(f["input_ids"])
            labels[row, :n] = torch.as_tensor(f["labels"])
            positions[row, :n] = torch.as_tensor(f["position_ids"])
            positions[row, n:] = torch.arange(width - n)
        # use_cache=False matters: with a KV cache in play, transformers skips the packed-sequence mask.
        return {"input_ids": input_ids, "labels": labels, "position_ids": positions, "use_cache": False}
