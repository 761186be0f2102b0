"""The train sampler: a run shorter than an epoch trains on a uniform draw of the rows, in an order fixed by the
seed and the epoch."""

from __future__ import annotations

import random

import pytest

from bayling.train.batches import EpochSeededSampler

BATCH = 4


def mixed_lengths(n: int = 800) -> list[int]:
    """Half the rows full (256 tokens, as packing fills the rows of long conversations), half shorter."""
    rng = random.Random(0)
    return [256 if i % 2 else rng.randint(120, 250) for i in range(n)]


def padding_share(lengths: list[int], order: list[int]) -> float:
    padded = used = 0
    for i in range(0, len(order), BATCH):
        batch = [lengths[j] for j in order[i : i + BATCH]]
        padded += max(batch) * len(batch)
        used += sum(batch)
    return 1 - used / padded


@pytest.mark.parametrize("group_by_length", [False, True])
def test_every_epoch_is_a_permutation_fixed_by_seed_and_epoch(group_by_length):
    lengths = mixed_lengths()
    sampler = EpochSeededSampler(lengths, BATCH, seed=13, group_by_length=group_by_length)
    first, second = sampler.order(0), sampler.order(1)
    assert sorted(first) == list(range(len(lengths))) and sorted(second) == list(range(len(lengths)))
    assert first != second
    again = EpochSeededSampler(lengths, BATCH, seed=13, group_by_length=group_by_length)
    again.set_epoch(1)
    assert list(again) == second  # a resumed run (a new sampler) continues with the same order
    assert EpochSeededSampler(lengths, BATCH, seed=14, group_by_length=group_by_length).order(0) != first


@pytest.mark.parametrize("group_by_length", [False, True])
def test_the_first_steps_are_a_uniform_draw_of_the_rows(group_by_length):
    """30 steps of 4 rows out of 800, over 300 epochs (as 300 seeds would be): each row is drawn about as often as
    any other, and the full rows make up half of what is drawn, as they do of the data. transformers' grouping
    alone would draw mostly full rows: a megabatch is sorted longest first."""
    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    lengths = mixed_lengths()
    sampler = EpochSeededSampler(lengths, BATCH, seed=13, group_by_length=group_by_length)
    steps, epochs = 30, 300
    drawn = [0] * len(lengths)
    for epoch in range(epochs):
        for index in sampler.order(epoch)[: steps * BATCH]:
            drawn[index] += 1
    expected = epochs * steps * BATCH / len(lengths)  # 45 draws per row
    full = sum(drawn[i] for i in range(len(lengths)) if lengths[i] == 256) / sum(drawn)
    assert 0.47 < full < 0.53, full
    assert min(drawn) > 0.4 * expected and max(drawn) < 1.7 * expected, (min(drawn), max(drawn))
    # the bias this sampler removes: grouping alone sorts a megabatch (200 rows here) longest first
    grouped_only = get_length_grouped_indices(lengths, BATCH, generator=torch.Generator().manual_seed(0))[: steps * BATCH]
    assert sum(lengths[i] == 256 for i in grouped_only) / len(grouped_only) > 0.8


def test_grouping_still_pays_for_unpacked_rows():
    """Unpacked rows vary in length: batches of similar lengths waste less on padding than a random order does."""
    rng = random.Random(1)
    lengths = [rng.randint(20, 1000) for _ in range(400)]
    grouped = EpochSeededSampler(lengths, BATCH, seed=13, group_by_length=True).order(0)
    plain = EpochSeededSampler(lengths, BATCH, seed=13, group_by_length=False).order(0)
    assert padding_share(lengths, grouped) < 0.5 * padding_share(lengths, plain)


def test_the_trainer_groups_unpacked_rows_only(tiny_model_dir, tokenizer, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    from bayling.config.train import TrainParams
    from bayling.train.trainer import supervised_trainer_class, training_arguments

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    args = training_arguments(TrainParams(max_steps=1), tmp_path / "out", tmp_path)
    rows = [{"input_ids": [1, 2, 3], "labels": [1, 2, 3]}] * 8
    for packed in (False, True):
        data = Dataset.from_list([dict(r, position_ids=[0, 1, 2]) for r in rows] if packed else rows)
        trainer = supervised_trainer_class()(model=model, args=args, train_dataset=data, processing_class=tokenizer)
        sampler = trainer._get_train_sampler()
        assert isinstance(sampler, EpochSeededSampler) and sampler.group_by_length is (not packed)
        assert sampler.strata is None
    strata = [[float(i), 1.0] for i in range(8)]
    trainer = supervised_trainer_class()(model=model, args=args, train_dataset=data, processing_class=tokenizer, row_strata=strata)
    assert trainer._get_train_sampler().strata == strata  # the train stage's rows, by mix cell


def cell_rows(n: int = 929, seed: int = 0) -> list[list[float]]:
    """Packed rows as the default run has them: each mostly one mix cell (zh, en, cross), some shared with another,
    supervised tokens varying from row to row, the cells 43/26/31 overall."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        cell = rng.choices(range(3), weights=[43, 26, 31])[0]
        weights = [0.0, 0.0, 0.0]
        weights[cell] = rng.randint(40, 250)
        if rng.random() < 0.3:
            weights[rng.randrange(3)] += rng.randint(10, 80)
        rows.append(weights)
    return rows


def worst_miss(strata: list[list[float]], drawn: list[int]) -> float:
    """The largest gap, in percentage points, between a cell's share of what was drawn and its share of all rows."""
    whole = [sum(r[k] for r in strata) for k in range(3)]
    got = [sum(strata[i][k] for i in drawn) for k in range(3)]
    return max(abs(g / sum(got) - w / sum(whole)) * 100 for g, w in zip(got, whole))


@pytest.mark.parametrize("group_by_length", [False, True])
def test_with_strata_every_stretch_from_the_start_draws_the_cells_in_the_datas_shares(group_by_length):
    """30 steps of 4 rows out of 929 (the default run): a plain random draw misses a cell's share of the supervised
    tokens by several points for some seeds; the interleaved one stays within a point for every seed and every
    stretch, draws each row about as often, and keeps the length grouping of unpacked rows (whose unit is a batch
    of 4 rows of mixed cells: within 2.5 points)."""
    strata = cell_rows()
    lengths = [256 if i % 2 else 40 + 200 * (i % 7) // 7 for i in range(len(strata))]
    plain_misses, misses = [], []
    drawn = [0] * len(strata)
    for seed in range(40):
        stratified = EpochSeededSampler(lengths, BATCH, seed, group_by_length, strata=strata)
        order = stratified.order(0)
        assert sorted(order) == list(range(len(strata)))
        assert stratified.order(0) == order and stratified.order(1) != order
        misses.append(max(worst_miss(strata, order[:k]) for k in (120, 240, 480)))
        plain_misses.append(worst_miss(strata, EpochSeededSampler(lengths, BATCH, seed, group_by_length).order(0)[:120]))
        for index in order[:120]:
            drawn[index] += 1
    assert max(misses) < (2.5 if group_by_length else 1.0), max(misses)
    assert max(plain_misses) > 3.0, max(plain_misses)  # what the interleaving is for
    expected = 40 * 120 / len(strata)
    assert max(drawn) < 4 * expected  # no row is favoured: each cell's rows come in a random order
    if group_by_length:
        order = EpochSeededSampler(lengths, BATCH, 13, True, strata=strata).order(0)
        grouped = EpochSeededSampler(lengths, BATCH, 13, True).order(0)
        assert padding_share(lengths, order) == pytest.approx(padding_share(lengths, grouped))  # batches kept whole
    with pytest.raises(ValueError, match="strata vectors for"):
        EpochSeededSampler(lengths, BATCH, 13, strata=strata[:-1])
    from bayling.train.batches import interleaved

    assert interleaved([2, 0, 1], [[], [], []]) == [2, 0, 1] and interleaved([], []) == []  # nothing to stratify by


def test_drawn_rows_are_the_rows_the_trainer_trained_on(tiny_model_dir, tokenizer, tmp_path):
    """The replay in drawn_rows against the Trainer itself: 20 packed rows, micro-batches of 3, 2 accumulated per
    step, 7 steps, so the run crosses an epoch that ends with a short micro-batch and a short step. The rows that
    reached the loss, in order, are the replayed ones."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    from bayling.config.train import TrainParams
    from bayling.train.batches import PackedCollator, drawn_rows
    from bayling.train.trainer import supervised_trainer_class, training_arguments

    seen: list[int] = []

    class RecordingCollator(PackedCollator):
        def __call__(self, features):  # type: ignore[no-untyped-def]
            return {**super().__call__(features), "row": torch.tensor([f["row"] for f in features])}

    class RecordingTrainer(supervised_trainer_class()):  # type: ignore[misc]
        def compute_loss(self, model, inputs, *args, **kwargs):  # type: ignore[no-untyped-def]
            seen.extend(inputs.pop("row").tolist())
            return super().compute_loss(model, inputs, *args, **kwargs)

    params = TrainParams(max_steps=7, per_device_batch_size=3, gradient_accumulation_steps=2, save_steps=100, logging_steps=100)
    rows = [{"input_ids": [5 + i, 6, 7, 8], "labels": [-100, 6, 7, 8], "position_ids": [0, 1, 2, 3], "row": i} for i in range(20)]
    trainer = RecordingTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                               args=training_arguments(params, tmp_path / "out", tmp_path, packed=True),
                               train_dataset=Dataset.from_list(rows), data_collator=RecordingCollator(tokenizer.pad_token_id),
                               processing_class=tokenizer)
    trainer.train()
    assert trainer.state.global_step == 7
    replayed = drawn_rows(trainer._get_train_sampler().order, 20, 3, 2, 1, 7)
    assert len(seen) == 38 and seen == replayed
