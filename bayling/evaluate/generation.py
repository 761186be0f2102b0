"""Batched, deterministic generation with left padding, and output cleaning."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from bayling.core.progress import track
from bayling.core.records import Message

LINE_BREAK = re.compile("[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")  # where str.splitlines splits


def clean_output(text: str) -> str:
    """The first non-empty line, whitespace collapsed: references are single segments."""
    for line in text.strip().splitlines():
        if line.strip():
            return " ".join(line.split())
    return ""


def resolved_precision(precision: str) -> str:
    """evaluate.precision with `auto` decided for this machine: bf16 where bf16 runs natively, else fp32."""
    if precision != "auto":
        return precision
    from bayling.core.hardware import native_bf16

    return "bf16" if native_bf16() else "fp32"


def weights_dtype(precision: str) -> Any:
    """The torch dtype evaluate loads weights in: fp32, or bf16 (`auto` as resolved_precision decides)."""
    import torch

    return torch.bfloat16 if resolved_precision(precision) == "bf16" else torch.float32


def first_line_stop(tokenizer: Any) -> Any:
    """A stopping criterion that ends a row once its reply has a line break after some text.

    What `clean_output` keeps of a reply is its first non-empty line, so greedy decoding past that
    line break only produces text that is thrown away; stopping there leaves every cleaned output
    unchanged (rows are independent in a batch) and ends the batch when its last row is done.
    """
    import torch
    from transformers import StoppingCriteria

    class FirstLineEnded(StoppingCriteria):
        def __init__(self) -> None:
            self.prompt_width: int | None = None
            self.done: torch.Tensor | None = None

        def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
            if self.done is None:
                self.prompt_width = input_ids.shape[1] - 1
                self.done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
            for row in (~self.done).nonzero().flatten().tolist():
                # the whole reply so far: a line separator may span several byte-level tokens
                reply = tokenizer.decode(input_ids[row, self.prompt_width:], skip_special_tokens=True)
                if LINE_BREAK.search(reply.lstrip()):
                    self.done[row] = True
            return self.done.clone()

    return FirstLineEnded


def row_budget_stop(budgets: Sequence[int]) -> Any:
    """A stopping criterion that ends each row once it has generated its own budget of tokens: a batch ends when
    its last row is done, and a row's output is exactly what a run with max_new_tokens = its budget gives."""
    import torch
    from transformers import StoppingCriteria

    class RowBudgetReached(StoppingCriteria):
        def __init__(self) -> None:
            self.prompt_width: int | None = None
            self.limits = torch.tensor(list(budgets), dtype=torch.long)

        def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
            if self.prompt_width is None:
                self.prompt_width = input_ids.shape[1] - 1
            generated = input_ids.shape[1] - self.prompt_width
            return (generated >= self.limits).to(input_ids.device)

    return RowBudgetReached


LOOP_PERIOD = 16  # the longest repeating unit looked for, in tokens
LOOP_SPAN = 32  # a row loops once its last max(LOOP_SPAN, 4 x period) tokens repeat one unit


class LoopStop:
    """A stopping criterion that ends a row caught in a loop: its last tokens are one unit of at most LOOP_PERIOD
    tokens repeated over max(LOOP_SPAN, 4 periods). Greedy decoding of a row whose recent tokens repeat exactly
    goes on repeating them (its next choice depends on those same tokens), so `extend` writes the rest of the
    loop up to the row's limit instead of decoding it: the output is the one full decoding gives whenever the
    loop holds to the limit, which benchmarks/generate.py measures. A row that already ended (its tail is
    padding) is left alone."""

    def __init__(self, ended: set[int]) -> None:
        self.prompt_width: int | None = None
        self.ended = ended  # token ids that end a row: padding and end-of-turn
        self.loops: dict[int, tuple[int, list[int]]] = {}  # row -> (tokens generated when caught, the repeating unit)

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        if self.prompt_width is None:
            self.prompt_width = input_ids.shape[1] - 1
        generated = input_ids[:, self.prompt_width :]
        width = generated.shape[1]
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for row in self.loops:
            done[row] = True
        for period in range(1, LOOP_PERIOD + 1):
            span = max(LOOP_SPAN, 4 * period)
            if width < span:
                break
            tail = generated[:, -span:]
            repeating = (tail[:, period:] == tail[:, :-period]).all(dim=1)
            for row in repeating.nonzero().flatten().tolist():
                if row not in self.loops and int(tail[row, -1]) not in self.ended:
                    self.loops[row] = (width, tail[row, -period:].tolist())
                    done[row] = True
        return done

    def extend(self, row: int, tokens: list[int], limit: int) -> list[int]:
        """A caught row's tokens with its loop written on to `limit` tokens."""
        if row not in self.loops:
            return tokens
        caught, unit = self.loops[row]
        kept = tokens[:caught]
        return kept + [unit[k % len(unit)] for k in range(max(0, limit - len(kept)))]


def generate(
    model: Any,
    tokenizer: Any,
    conversations: Sequence[Sequence[Message]],
    *,
    batch_size: int = 16,
    max_new_tokens: int | Sequence[int] = 128,
    num_beams: int = 1,
    min_new_tokens: int | None = None,
    first_line_only: bool = False,
    stop_loops: bool = False,
) -> list[str]:
    """Assistant replies for each conversation (which ends with a user turn), in input order.

    Prompts are sorted by length so each batch pads little; greedy or beam search, never sampling.
    With `first_line_only` (greedy only), a row stops at the end of its first line of text: the
    replies then hold at least everything `clean_output` keeps. `max_new_tokens` is one limit for all,
    or one per conversation (greedy only): each row stops at its own, and a batch with its last row. The
    order stays by prompt length (padding, which can flip a greedy choice, is as without budgets); it
    groups directions anyway, as a prompt's length follows its source language's token rate.
    With `stop_loops` (greedy only), a row caught repeating itself stops, and its loop is written on to its
    limit (LoopStop): a batch then ends with its last row that is still saying something new.
    """
    import torch
    from transformers import StoppingCriteriaList

    stop_class = first_line_stop(tokenizer) if first_line_only and num_beams == 1 and not min_new_tokens else None
    budgets = None if isinstance(max_new_tokens, int) else list(max_new_tokens)
    if budgets is not None and (len(budgets) != len(conversations) or num_beams != 1):
        raise ValueError("one token budget per conversation, with greedy decoding")
    if stop_loops and (num_beams != 1 or min_new_tokens):
        raise ValueError("stop_loops needs greedy decoding without min_new_tokens")
    ends = {tokenizer.pad_token_id, tokenizer.eos_token_id}
    ends |= set(model.generation_config.eos_token_id if isinstance(model.generation_config.eos_token_id, list)
                else [model.generation_config.eos_token_id])

    prompts = [
        tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        for messages in conversations
    ]
    lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
    previous_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    outputs: list[str] = [""] * len(prompts)
    batches = range(0, len(order), batch_size)
    try:
        model.eval()
        for start in track(batches, len(batches), "generate", "batch"):
            index = order[start : start + batch_size]
            batch = tokenizer([prompts[i] for i in index], return_tensors="pt", padding=True, add_special_tokens=False)
            batch = {k: v.to(model.device) for k, v in batch.items()}
            stops = [stop_class()] if stop_class else []
            if budgets is not None:
                stops.append(row_budget_stop([budgets[i] for i in index])())
            loops = LoopStop({t for t in ends if t is not None}) if stop_loops else None
            if loops is not None:
                stops.append(loops)
            with torch.inference_mode():
                generated = model.generate(
                    **batch,
                    max_new_tokens=max(budgets[i] for i in index) if budgets is not None else max_new_tokens,
                    min_new_tokens=min_new_tokens,
                    do_sample=False,
                    num_beams=num_beams,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=model.generation_config.eos_token_id or tokenizer.eos_token_id,
                    stopping_criteria=StoppingCriteriaList(stops) if stops else None,
                )
            new_tokens = generated[:, batch["input_ids"].shape[1] :].tolist()
            if loops is not None:
                new_tokens = [loops.extend(row, tokens, budgets[i] if budgets is not None else int(max_new_tokens))  # type: ignore[arg-type]
                              for row, (i, tokens) in enumerate(zip(index, new_tokens))]
            for i, text in zip(index, tokenizer.batch_decode(new_tokens, skip_special_tokens=True)):
                outputs[i] = text
    finally:
        tokenizer.padding_side = previous_side
    return outputs
