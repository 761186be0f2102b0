"""Batched, deterministic generation with left padding, and output cleaning."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bayling.core.records import Message


def clean_output(text: str) -> str:
    """The first non-empty line, whitespace collapsed: references are single segments."""
    for line in text.strip().splitlines():
        if line.strip():
            return " ".join(line.split())
    return ""


def generate(
    model: Any,
    tokenizer: Any,
    conversations: Sequence[Sequence[Message]],
    *,
    batch_size: int = 16,
    max_new_tokens: int = 128,
    num_beams: int = 1,
    min_new_tokens: int | None = None,
) -> list[str]:
    """Assistant replies for each conversation (which ends with a user turn), in input order.

    Prompts are sorted by length so each batch pads little; greedy or beam search, never sampling.
    """
    import torch

    prompts = [
        tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        for messages in conversations
    ]
    lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
    previous_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    outputs: list[str] = [""] * len(prompts)
    try:
        model.eval()
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            batch = tokenizer([prompts[i] for i in index], return_tensors="pt", padding=True, add_special_tokens=False)
            batch = {k: v.to(model.device) for k, v in batch.items()}
            with torch.inference_mode():
                generated = model.generate(
                    **batch,
                    max_new_tokens=max_new_tokens,
                    min_new_tokens=min_new_tokens,
                    do_sample=False,
                    num_beams=num_beams,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=model.generation_config.eos_token_id or tokenizer.eos_token_id,
                )
            new_tokens = generated[:, batch["input_ids"].shape[1] :]
            for i, text in zip(index, tokenizer.batch_decode(new_tokens, skip_special_tokens=True)):
                outputs[i] = text
    finally:
        tokenizer.padding_side = previous_side
    return outputs
