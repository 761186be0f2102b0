"""Packed batches under FlashAttention-2, emulated on the CPU: no token may attend across conversations,
whatever the batch size. transformers only infers sequence boundaries from position ids when the batch
has exactly one row, so a (rows, width) batch of packed rows must carry its boundaries explicitly."""

from __future__ import annotations

import pytest
import torch
from fa2_emulation import emulated_flash_attention_2, use_flash_attention_2
from helpers import encode

from bayling.tokenize.packing import best_fit_decreasing, pack_rows
from bayling.train.batches import PackedCollator


def _conversations(n: int) -> list[list[dict[str, str]]]:
    return [
        [{"role": "user", "content": f"Provide the French translation for this sentence: sentence {i} " + "word " * (3 * i % 11)},
         {"role": "assistant", "content": "Bonjour " * (1 + i % 4) + f"numéro {i}."}]
        for i in range(14)
    ]


@pytest.fixture(scope="module")
def packed(tokenizer):
    encoded = encode(tokenizer, _conversations(14))
    capacity = 3 * max(len(e) for e in encoded)  # rows of two to four conversations each
    rows = pack_rows([(e.input_ids, e.labels) for e in encoded], best_fit_decreasing([len(e) for e in encoded], capacity))
    features = [{"input_ids": r.input_ids, "labels": r.labels, "position_ids": r.position_ids} for r in rows]
    assert len(features) >= 4 and sum(r.sequences > 1 for r in rows) >= 3
    return features


def _sequences(ids: torch.Tensor, positions: torch.Tensor) -> list[tuple[int, int]]:
    """(start, stop) of every sequence in a flat row of position ids."""
    starts = (positions == 0).nonzero().flatten().tolist() + [len(positions)]
    return list(zip(starts[:-1], starts[1:]))


def _alone(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids.unsqueeze(0), use_cache=False).logits[0]


def _max_difference(model, batch: dict, reference_model) -> float:
    with torch.no_grad():
        logits = model(**batch).logits
    worst = 0.0
    for row in range(batch["input_ids"].shape[0]):
        ids, positions = batch["input_ids"][row], batch["position_ids"][row]
        for start, stop in _sequences(ids, positions):
            expected = _alone(reference_model, ids[start:stop])
            worst = max(worst, (logits[row, start:stop] - expected).abs().max().item())
    return worst


def _boundaryless(features: list[dict]) -> dict:
    """Packed rows side by side as a (rows, width) batch with restarting position ids and nothing else."""
    width = max(len(f["input_ids"]) for f in features)
    ids = torch.zeros(len(features), width, dtype=torch.long)
    positions = torch.arange(width).repeat(len(features), 1)
    for row, f in enumerate(features):
        n = len(f["input_ids"])
        ids[row, :n] = torch.as_tensor(f["input_ids"])
        positions[row, :n] = torch.as_tensor(f["position_ids"])
        positions[row, n:] = torch.arange(width - n)
    return {"input_ids": ids, "position_ids": positions, "use_cache": False}


@pytest.mark.parametrize("implementation", ["flash_attention_2", "sdpa", "eager"])
def test_every_token_sees_only_its_own_conversation(tiny_model_dir, tokenizer, packed, implementation):
    from transformers import AutoModelForCausalLM

    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager").eval()
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa" if implementation != "eager" else "eager")
    model.eval()
    batch = PackedCollator(tokenizer.pad_token_id)(packed)
    batch.pop("labels")
    if implementation == "flash_attention_2":
        with emulated_flash_attention_2() as calls:
            use_flash_attention_2(model)
            difference = _max_difference(model, batch, reference)
        assert calls["flash_attn_varlen_func"] > 0 and calls["flash_attn_func"] == 0  # the varlen kernel, every layer
    else:
        difference = _max_difference(model, batch, reference)
    assert difference < 1e-5


def test_without_boundaries_flash_attention_leaks_across_conversations(tiny_model_dir, packed):
    """The check above can fail: a (rows, width) batch without boundaries attends across conversations under FA2."""
    from transformers import AutoModelForCausalLM

    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager").eval()
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa").eval()
    with emulated_flash_attention_2() as calls:
        use_flash_attention_2(model)
        difference = _max_difference(model, _boundaryless(packed), reference)
    assert calls["flash_attn_func"] > 0  # transformers took the dense kernel: it cannot see the boundaries
    assert difference > 1e-2
