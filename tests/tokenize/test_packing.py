import random

import numpy as np
import pytest
import torch
from helpers import encode

from bayling.core.records import IGNORE_INDEX
from bayling.tokenize.packing import best_fit_decreasing, pack_rows
from bayling.train.batches import PackedCollator, padding_collator


def test_best_fit_decreasing_places_each_item_once_within_capacity():
    rng = random.Random(0)
    lengths = [rng.randint(1, 500) for _ in range(3000)]
    bins = best_fit_decreasing(lengths, 2048)
    placed = sorted(i for b in bins for i in b)
    assert placed == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 2048 for b in bins)
    fill = sum(lengths) / (len(bins) * 2048)
    assert fill > 0.99


def test_best_fit_picks_the_tightest_bin():
    assert best_fit_decreasing([6, 5, 4, 3], 10) == [[0, 2], [1, 3]]
    assert best_fit_decreasing([10, 10], 10) == [[0], [1]]
    with pytest.raises(ValueError):
        best_fit_decreasing([11], 10)


def test_packed_rows_restart_positions_and_ignore_first_labels():
    items = [(np.array([1, 2, 3], dtype=np.int32), np.array([-100, 2, 3], dtype=np.int32)),
             (np.array([4, 5], dtype=np.int32), np.array([4, 5], dtype=np.int32))]
    (row,) = pack_rows(items, [[0, 1]])
    assert row.input_ids.tolist() == [1, 2, 3, 4, 5]
    assert row.position_ids.tolist() == [0, 1, 2, 0, 1]
    assert row.labels.tolist() == [-100, 2, 3, -100, 5]
    assert row.sequences == 2


def test_packed_loss_equals_token_weighted_mean_of_separate_losses(tiny_model_dir, tokenizer):
    """No attention across packed sequences: the CPU mask path built from restarting position ids."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa").eval()
    conversations = [
        [{"role": "user", "content": f"Provide the French translation for this sentence: sentence {i} " + "word " * (i * 3)},
         {"role": "assistant", "content": "Bonjour " * (i + 1)}]
        for i in range(6)
    ]
    encoded = encode(tokenizer, conversations)
    items = [(e.input_ids, e.labels) for e in encoded]
    bins = best_fit_decreasing([len(e) for e in encoded], 400)
    rows = pack_rows(items, bins)
    assert len(rows) < len(items) and max(r.sequences for r in rows) > 1
    batch = PackedCollator(tokenizer.pad_token_id)(
        [{"input_ids": r.input_ids, "labels": r.labels, "position_ids": r.position_ids} for r in rows]
    )
    assert "attention_mask" not in batch
    with torch.no_grad():
        packed = model(**batch).loss.item()
        total, count = 0.0, 0
        for e in encoded:
            single = padding_collator(tokenizer)([{"input_ids": e.input_ids, "labels": e.labels}])
            n = int((single["labels"][:, 1:] != IGNORE_INDEX).sum())
            total += model(**single).loss.item() * n
            count += n
    assert packed == pytest.approx(total / count, abs=1e-5)
    # and the cross-contamination it prevents is real: without restarting positions the loss differs
    leaky = dict(batch)
    leaky["position_ids"] = torch.arange(batch["input_ids"].shape[1]).expand_as(batch["input_ids"])
    with torch.no_grad():
        assert abs(model(**leaky).loss.item() - packed) > 1e-3


def test_architectures_with_state_across_tokens_refuse_packing():
    from transformers import CONFIG_MAPPING

    from bayling.tokenize.packing import packing_refusal

    assert packing_refusal(CONFIG_MAPPING["llama"]()) is None
    assert packing_refusal(CONFIG_MAPPING["gemma2"]()) is None  # sliding and full attention both honour boundaries
    for model_type in ("mamba", "qwen3_next", "jamba", "lfm2"):
        reason = packing_refusal(CONFIG_MAPPING[model_type]())
        assert reason and model_type in reason and "tokenize.packing: false" in reason
    hybrid = CONFIG_MAPPING["llama"]()
    hybrid.layer_types = ["full_attention", "linear_attention"]
    assert "linear_attention" in packing_refusal(hybrid)
