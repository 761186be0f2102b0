"""Batches for the Trainer: right-padded rows through transformers' DataCollatorForSeq2Seq, and packed
rows, whose conversations must never attend to one another.

The packed collator is written here because transformers' DataCollatorWithFlattening treats every
feature as one sequence and numbers its positions from 0, while a packed row already holds several
conversations whose position ids restart at each one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bayling.core.records import IGNORE_INDEX


def padding_collator(tokenizer: Any) -> Any:
    """Right-pads input ids with the pad id, labels with IGNORE_INDEX and the attention mask with 0."""
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=IGNORE_INDEX, return_tensors="pt")


@dataclass(frozen=True)
class PackedCollator:
    """Packed rows as a (rows, width) batch that carries the boundaries of every conversation.

    transformers infers sequence boundaries from position ids only for a batch of exactly one row
    (`_is_packed_sequence` in modeling_flash_attention_utils); for more rows FlashAttention-2 would run
    its dense kernel across whole rows and let conversations attend to each other. So the batch also
    carries `cu_seq_lens_q/k` and `max_length_q/k` over the rows laid end to end, which sends
    FlashAttention to its varlen kernel. SDPA and eager ignore them and build a block-diagonal causal
    mask from the restarting position ids, row by row, so they pay no attention across rows either.
    A row's padding is a sequence of its own; no attention mask is passed (FlashAttention would then
    treat a whole row as one sequence).
    """

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
        flat = positions.flatten()
        starts = (flat == 0).nonzero().flatten()
        boundaries = torch.cat([starts, torch.tensor([flat.numel()])]).to(torch.int32)
        longest = int(boundaries.diff().max())
        # use_cache=False matters: with a KV cache in play, transformers skips the packed-sequence mask.
        return {"input_ids": input_ids, "labels": labels, "position_ids": positions, "cu_seq_lens_q": boundaries,
                "cu_seq_lens_k": boundaries, "max_length_q": longest, "max_length_k": longest, "use_cache": False}


class EpochSeededSampler:
    """Each epoch's row order, fixed by the seed and the epoch alone, in which any stretch of batches is a uniform
    draw of the data.

    transformers' sampler draws each epoch's order from the global RNG when the epoch starts, and a run
    resumed mid-epoch restores that RNG only after the order is drawn, so it trains on other batches
    than the run it continues. Here nothing depends on what ran before: epoch k is the same permutation
    in a fresh run, a resumed one, and on every rank.

    Packed rows (`group_by_length=False`) come in a plain random permutation: they are nearly all
    `max_seq_len` long, so grouping them saves little padding (the default run's 929 rows: 2.9% of a
    batch's tokens padding in random order, 0.2% grouped), while transformers' LengthGroupedSampler
    hands a run shorter than an epoch the longest rows of one megabatch, which packing fills with the
    longest conversations. Unpacked rows are grouped as that sampler does (megabatches of similar lengths),
    and then the batches themselves are shuffled, so the first k batches are any k batches with equal
    chance and a short run still sees every kind of row.

    With `strata` (each row's supervised tokens per mix cell), the rows, or the batches of grouped rows,
    are then interleaved so that every stretch from the start holds the cells in the data's shares
    (`interleaved`): the draw is stratified, not merely uniform.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, group_by_length: bool = True,
                 strata: Sequence[Sequence[float]] | None = None) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.group_by_length = group_by_length
        self.strata = [list(v) for v in strata] if strata is not None else None
        if self.strata is not None and len(self.strata) != len(self.lengths):
            raise ValueError(f"{len(self.strata)} strata vectors for {len(self.lengths)} rows")
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def order(self, epoch: int) -> list[int]:
        import torch
        from transformers.trainer_pt_utils import get_length_grouped_indices

        from bayling.core.seeding import seeded_digest

        generator = torch.Generator().manual_seed(int.from_bytes(seeded_digest(self.seed, "epoch", str(epoch))[:8], "big") >> 1)
        if not self.group_by_length:
            permutation = torch.randperm(len(self.lengths), generator=generator).tolist()
            return interleaved(permutation, self.strata) if self.strata is not None else permutation
        grouped = list(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))
        batches = [grouped[i : i + self.batch_size] for i in range(0, len(grouped), self.batch_size)]
        full = len(grouped) // self.batch_size  # a short last batch stays last: moved inside, it would shift every later batch
        shuffled = torch.randperm(full, generator=generator).tolist()
        if self.strata is not None:
            sums = [[sum(self.strata[i][k] for i in batch) for k in range(len(self.strata[0]))] for batch in batches]
            shuffled = interleaved(shuffled, sums)
        return [index for b in shuffled + list(range(full, len(batches))) for index in batches[b]]

    def __iter__(self) -> Any:
        return iter(self.order(self.epoch))


def interleaved(permutation: Sequence[int], strata: Sequence[Sequence[float]]) -> list[int]:
    """`permutation` reordered so that every stretch from its start holds the strata in the shares the whole does.

    `strata[i]` is item i's weight in each stratum (a packed row's supervised tokens per mix cell). Items queue
    under the stratum they weigh most in, in the permutation's order; each next item is the head of the queue
    that leaves the running totals closest (L1) to the whole's shares. Each stratum's items are therefore drawn
    at random, and the first k items are a stratified random draw: a run of 30 steps trains on the mix that the
    tokenized set holds, where a plain random draw of 120 packed rows misses it by several points.
    """
    width = len(strata[0]) if permutation else 0
    if not width:  # no items, or items that name no stratum: nothing to interleave by
        return list(permutation)
    whole = [sum(strata[i][k] for i in permutation) for k in range(width)]
    total = sum(whole) or 1.0
    target = [w / total for w in whole]
    queues: list[list[int]] = [[] for _ in range(width)]
    for i in permutation:
        weights = strata[i]
        queues[max(range(width), key=lambda k: weights[k])].append(i)
    heads = [0] * width
    running = [0.0] * width
    order: list[int] = []
    while len(order) < len(permutation):
        best, best_miss = -1, 0.0
        for k in range(width):
            if heads[k] == len(queues[k]):
                continue
            weights = strata[queues[k][heads[k]]]
            after = [running[j] + weights[j] for j in range(width)]
            size = sum(after)
            miss = sum(abs(after[j] - target[j] * size) for j in range(width))
            if best < 0 or miss < best_miss:
                best, best_miss = k, miss
        item = queues[best][heads[best]]
        heads[best] += 1
        order.append(item)
        running = [running[j] + strata[item][j] for j in range(width)]
    return order


def row_lengths(dataset: Any) -> list[int]:
    """Token count of every row, read from the Arrow column without materialising the rows."""
    import pyarrow.compute as pc

    return pc.list_value_length(dataset.data.column("input_ids")).to_pylist()


def drawn_rows(order: Callable[[int], Sequence[int]], rows: int, per_device_batch: int, accumulation: int, world_size: int,
               steps: int) -> list[int]:
    """The row indices the first `steps` optimizer steps trained on, repeats included, replayed from the sampler's
    per-epoch order (`order(epoch)`), as the Trainer's data loader hands them out: consecutive micro-batches of
    `per_device_batch` rows on each of `world_size` processes, `accumulation` of them a step; an epoch ends with a
    short micro-batch and, when its micro-batches do not divide by `accumulation`, a short step.

    With several processes accelerate pads an epoch's last micro-batch with rows from its start; those repeats
    are not counted.
    """
    per_micro = per_device_batch * world_size
    drawn: list[int] = []
    epoch, done = 0, 0
    while done < steps and rows:
        indices = list(order(epoch))
        micro = [indices[i : i + per_micro] for i in range(0, len(indices), per_micro)]
        for start in range(0, len(micro), accumulation):
            if done == steps:
                break
            drawn.extend(index for batch in micro[start : start + accumulation] for index in batch)
            done += 1
        epoch += 1
    return drawn
