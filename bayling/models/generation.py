"""Batched, deterministic generation with left padding, and output cleaning."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from bayling.core.progress import Progress
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
    `already[row]`: tokens of that row's reply that sit at the end of its input (a row carried on).
    """
    import torch
    from transformers import StoppingCriteria

    class FirstLineEnded(StoppingCriteria):
        def __init__(self, already: Sequence[int] | None = None) -> None:
            self.prompt_width: int | None = None
            self.done: torch.Tensor | None = None
            self.already = list(already or [])

        def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
            if self.done is None:
                self.prompt_width = input_ids.shape[1] - 1
                self.done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
                self.already += [0] * (input_ids.shape[0] - len(self.already))
            assert self.prompt_width is not None
            for row in (~self.done).nonzero().flatten().tolist():
                # the whole reply so far: a line separator may span several byte-level tokens
                reply = tokenizer.decode(input_ids[row, self.prompt_width - self.already[row]:], skip_special_tokens=True)
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
    padding) is left alone. `already[row]`: tokens of its reply at the end of its input (a row carried on)."""

    def __init__(self, ended: set[int], already: Sequence[int] | None = None) -> None:
        self.prompt_width: int | None = None
        self.ended = ended  # token ids that end a row: padding and end-of-turn
        self.already = list(already or [])
        self.loops: dict[int, tuple[int, list[int]]] = {}  # row -> (reply tokens when caught, the repeating unit)

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        if self.prompt_width is None:
            self.prompt_width = input_ids.shape[1] - 1
            self.already += [0] * (input_ids.shape[0] - len(self.already))
        new = input_ids.shape[1] - self.prompt_width
        lengths = torch.tensor(self.already, dtype=torch.long) + new  # each row's reply so far, in tokens
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for row in self.loops:
            done[row] = True
        for period in range(1, LOOP_PERIOD + 1):
            span = max(LOOP_SPAN, 4 * period)
            if int(lengths.max()) < span:
                break
            tail = input_ids[:, -span:]
            repeating = (tail[:, period:] == tail[:, :-period]).all(dim=1) & (lengths >= span)
            for row in repeating.nonzero().flatten().tolist():
                if row not in self.loops and int(tail[row, -1]) not in self.ended:
                    self.loops[row] = (int(lengths[row]), tail[row, -period:].tolist())
                    done[row] = True
        return done

    def extend(self, row: int, tokens: list[int], limit: int) -> list[int]:
        """A caught row's reply tokens (all of them, carried-on ones included) with its loop written on to `limit`."""
        if row not in self.loops:
            return tokens
        caught, unit = self.loops[row]
        kept = tokens[:caught]
        return kept + [unit[k % len(unit)] for k in range(max(0, limit - len(kept)))]


class Regroup:
    """Every stopping criterion of a batch in one, plus the cut that makes a batch give way to the next.

    In a Hugging Face `generate` batch, a row that has ended still costs its share of every forward pass until
    the last row ends, and one row that runs on (a model counting "le 1979, le 1980, ...") holds 95 finished
    rows for 170 steps. So, while other rows wait, a batch stops once at most `below` of its rows are still
    going; `cut` then names them, and they carry on later from their prompt and the tokens they have, batched
    with the rows other batches left. Transformers' own continuous batching does this with a paged cache, but
    on the CPU it measured slower than padded batches (benchmarks/README.md), so this keeps `generate`.
    """

    def __init__(self, stops: list[Any], ended: set[int], below: int) -> None:
        self.stops, self.ended, self.below = stops, ended, below
        self.done: Any = None
        self.cut: list[int] = []

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        done = torch.tensor([int(t) in self.ended for t in input_ids[:, -1].tolist()], dtype=torch.bool)
        for stop in self.stops:
            done |= stop(input_ids, scores, **kwargs).to(done.device)
        self.done = done if self.done is None else self.done | done
        going = (~self.done).nonzero().flatten().tolist()
        if going and len(going) <= self.below:
            self.cut = going
            return torch.ones_like(self.done, device=input_ids.device)
        return self.done.clone().to(input_ids.device)


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
    regroup_below: float = 0.0,
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
    With `regroup_below` (greedy only), a batch whose rows still going fall to that share of it stops while
    other rows wait, and those rows carry on from where they are in a later batch (Regroup).
    """

    budgets = None if isinstance(max_new_tokens, int) else list(max_new_tokens)
    if budgets is not None and (len(budgets) != len(conversations) or num_beams != 1):
        raise ValueError("one token budget per conversation, with greedy decoding")
    if stop_loops and (num_beams != 1 or min_new_tokens):
        raise ValueError("stop_loops needs greedy decoding without min_new_tokens")
    if regroup_below and (num_beams != 1 or min_new_tokens):
        raise ValueError("regroup_below needs greedy decoding without min_new_tokens")
    limits = budgets if budgets is not None else [int(max_new_tokens)] * len(conversations)  # type: ignore[arg-type]
    eos = model.generation_config.eos_token_id or tokenizer.eos_token_id
    ends = {t for t in {tokenizer.pad_token_id, tokenizer.eos_token_id, *(eos if isinstance(eos, list) else [eos])} if t is not None}
    prompts = [
        tokenizer(tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True),
                  add_special_tokens=False)["input_ids"]
        for messages in conversations
    ]
    replies: list[list[int]] = [[] for _ in prompts]  # each row's reply tokens so far
    queue = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    carried: list[int] = []  # rows cut from earlier batches: batched together, never with fresh prompts they would pad
    model.eval()
    with Progress(len(queue), "generate", "row") as progress:
        while queue or carried:
            if queue:
                index, queue = queue[:batch_size], queue[batch_size:]
            else:
                index, carried = carried[:batch_size], carried[batch_size:]
            below = int(regroup_below * len(index)) if queue or carried else 0
            left = _decode(model, tokenizer, index, prompts, replies, limits, ends, eos, below=below,
                           num_beams=num_beams, min_new_tokens=min_new_tokens, first_line_only=first_line_only,
                           stop_loops=stop_loops)
            carried = sorted(carried + left, key=lambda i: -(len(prompts[i]) + len(replies[i])))
            progress.update(len(index) - len(left))
    return tokenizer.batch_decode(replies, skip_special_tokens=True)


def _decode(model: Any, tokenizer: Any, index: list[int], prompts: list[list[int]], replies: list[list[int]],
            limits: list[int], ends: set[int], eos: Any, *, below: int, num_beams: int, min_new_tokens: int | None,
            first_line_only: bool, stop_loops: bool) -> list[int]:
    """One left-padded batch of `index` rows, each from its prompt and the reply tokens it has; their replies grow
    in `replies`. Returns the rows cut to carry on later (see Regroup)."""
    import torch
    from transformers import StoppingCriteriaList

    already = [len(replies[i]) for i in index]
    inputs = [prompts[i] + replies[i] for i in index]
    width = max(map(len, inputs))
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in inputs], dtype=torch.long, device=model.device)
    attention_mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in inputs], dtype=torch.long, device=model.device)
    left = [limits[i] - len(replies[i]) for i in index]
    stops: list[Any] = []
    if first_line_only and num_beams == 1 and not min_new_tokens:
        stops.append(first_line_stop(tokenizer)(already))
    if len(set(left)) > 1:  # one limit for all is max_new_tokens itself
        stops.append(row_budget_stop(left)())
    loops = LoopStop(ends, already) if stop_loops else None
    if loops is not None:
        stops.append(loops)
    regroup = Regroup(stops, ends, below) if below else None
    criteria = [regroup] if regroup is not None else stops
    with torch.inference_mode():
        generated = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=max(left),
            min_new_tokens=min_new_tokens,
            do_sample=False,
            num_beams=num_beams,
            pad_token_id=pad,
            eos_token_id=eos,
            stopping_criteria=StoppingCriteriaList(criteria) if criteria else None,
        )
    new_tokens = generated[:, width:].tolist()
    cut = {index[row] for row in regroup.cut} if regroup is not None else set()
    for row, (i, tokens) in enumerate(zip(index, new_tokens)):
        replies[i] = replies[i] + (tokens if i in cut else _strip_ended(tokens, ends))
        if loops is not None:
            replies[i] = loops.extend(row, replies[i], limits[i])
    return sorted(cut)


def _strip_ended(tokens: list[int], ends: set[int]) -> list[int]:
    """A finished row's new tokens up to and including its end-of-turn: the padding after it is dropped."""
    for k, token in enumerate(tokens):
        if token in ends:
            return tokens[: k + 1]
    return tokens
