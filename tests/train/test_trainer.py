import pytest
import torch
from helpers import encode

from bayling.config.train import TrainParams
from bayling.core.records import IGNORE_INDEX
from bayling.train.batches import PackedCollator, padding_collator
from bayling.train.throughput import flops_per_token
from bayling.train.trainer import supervised_trainer_class, training_arguments


def conversations(n):
    return [
        [{"role": "user", "content": f"Provide the French translation for this sentence: number {i} " + "x " * (i % 5)},
         {"role": "assistant", "content": "Lavez-vous les mains." + " encore" * (i % 3)}]
        for i in range(n)
    ]


def rows(tokenizer, n=16):
    return [{"input_ids": e.input_ids, "labels": e.labels} for e in encode(tokenizer, conversations(n))]


def test_collators(tokenizer):
    pad = tokenizer.pad_token_id
    batch = padding_collator(tokenizer)([
        {"input_ids": [5, 6, 7], "labels": [IGNORE_INDEX, 6, 7], "attention_mask": [1, 1, 1]},
        {"input_ids": [8], "labels": [8], "attention_mask": [1]},
    ])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, pad, pad]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7], [8, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    packed = PackedCollator(pad_token_id=0)([
        {"input_ids": [8, 9, 1, 2], "labels": [8, 9, 1, 2], "position_ids": [0, 1, 0, 1]},
        {"input_ids": [5, 6], "labels": [IGNORE_INDEX, 6], "position_ids": [0, 1]},
    ])
    assert packed["input_ids"].tolist() == [[8, 9, 1, 2], [5, 6, 0, 0]]
    assert packed["position_ids"].tolist() == [[0, 1, 0, 1], [0, 1, 0, 1]]  # padding is a sequence of its own
    assert packed["labels"].tolist() == [[8, 9, 1, 2], [IGNORE_INDEX, 6, IGNORE_INDEX, IGNORE_INDEX]]
    # the boundaries over the rows laid end to end, for FlashAttention's varlen kernel
    assert packed["cu_seq_lens_q"].tolist() == packed["cu_seq_lens_k"].tolist() == [0, 2, 4, 6, 8]
    assert packed["max_length_q"] == packed["max_length_k"] == 2
    assert "attention_mask" not in packed


def _trainer(model, tokenizer, tmp_path, dataset=None, **overrides):
    from datasets import Dataset

    # fp32: these tests compare losses and gradients across batchings to 1e-5; bf16 autocast has its own study
    params = TrainParams(**{"max_steps": 1, "per_device_batch_size": 8, "learning_rate": 1e-3, "warmup_ratio": 0.0,
                            "logging_steps": 1, "save_steps": 100, "max_grad_norm": 0.0, "precision": "fp32", **overrides})
    args = training_arguments(params, tmp_path / "ckpt", tmp_path)
    args.train_sampling_strategy = "sequential"
    data = dataset or Dataset.from_list(rows(tokenizer, 8))
    return supervised_trainer_class()(model=model, args=args, train_dataset=data, data_collator=padding_collator(tokenizer))


def test_fast_loss_and_gradients_equal_the_standard_ones(tiny_model_dir, tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    trainer = _trainer(model, tokenizer, tmp_path)
    assert trainer._fast_loss
    batch = rows(tokenizer, 6)
    padded = padding_collator(tokenizer)(batch)
    count = int((padded["labels"][:, 1:] != IGNORE_INDEX).sum())
    fast = trainer.compute_loss(model, dict(padded), num_items_in_batch=torch.tensor(count))
    fast.backward()
    fast_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    standard = model(**padded).loss
    standard.backward()
    assert abs(fast.item() - standard.item()) < 1e-5
    for a, p in zip(fast_grads, model.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-6, rtol=1e-4)


def _one_step_grads(tiny_model_dir, tokenizer, tmp_path, batch, accumulation, accepts_loss_kwargs=True):
    from transformers import AutoModelForCausalLM, TrainerCallback

    captured = {}

    class Capture(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
            captured["grads"] = [p.grad.detach().clone() for p in model.parameters()]

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    if not accepts_loss_kwargs:  # a model whose forward takes no num_items_in_batch: the Trainer then counts nothing itself
        model.accepts_loss_kwargs = False
    trainer = _trainer(model, tokenizer, tmp_path / f"{batch}x{accumulation}-{accepts_loss_kwargs}", per_device_batch_size=batch,
                       gradient_accumulation_steps=accumulation)
    trainer.add_callback(Capture())
    result = trainer.train()
    return result.training_loss, captured["grads"]


@pytest.mark.parametrize("accepts_loss_kwargs", [True, False])
def test_gradient_accumulation_1x8_equals_8x1(tiny_model_dir, tokenizer, tmp_path, accepts_loss_kwargs):
    """Loss normalised over tokens across micro-batches: unequal micro-batch token counts must not bias it,
    whether or not the model's forward takes loss kwargs."""
    loss_8x1, grads_8x1 = _one_step_grads(tiny_model_dir, tokenizer, tmp_path, 8, 1, accepts_loss_kwargs)
    loss_1x8, grads_1x8 = _one_step_grads(tiny_model_dir, tokenizer, tmp_path, 1, 8, accepts_loss_kwargs)
    assert abs(loss_8x1 - loss_1x8) < 1e-5
    for a, b in zip(grads_8x1, grads_1x8):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)


def test_a_few_steps_lower_the_loss(tiny_model_dir, tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    data = rows(tokenizer, 16)

    def loss_now() -> float:
        with torch.no_grad():
            return model(**padding_collator(tokenizer)(data)).loss.item()

    before = loss_now()
    from datasets import Dataset

    trainer = _trainer(model, tokenizer, tmp_path, Dataset.from_list(data), max_steps=6, learning_rate=5e-3, max_grad_norm=1.0)
    trainer.train()
    assert loss_now() < before - 1.0


def test_precision_auto_is_bf16_only_where_bf16_is_native(monkeypatch):
    from bayling.core import hardware
    from bayling.train.trainer import precision

    monkeypatch.setattr(hardware, "native_bf16", lambda: True)
    assert precision("auto") == {"bf16": True, "fp16": False}
    assert precision("auto", deepspeed="zero2") == {"bf16": torch.cuda.is_available(), "fp16": False}
    monkeypatch.setattr(hardware, "native_bf16", lambda: False)
    assert precision("auto") == {"bf16": False, "fp16": False}
    assert precision("fp32") == {"bf16": False, "fp16": False} and precision("bf16") == {"bf16": True, "fp16": False}


def test_flops_per_token(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    n = sum(p.numel() for p in model.parameters())  # tied embeddings: the head's matmul counts once
    cfg = model.config
    assert flops_per_token(model, 256) == 6 * n + 12 * cfg.num_hidden_layers * cfg.hidden_size * 256
    assert flops_per_token(model, 256, lora=True) == 4 * n + 12 * cfg.num_hidden_layers * cfg.hidden_size * 256


def test_tokens_seen_count_every_token_of_a_packed_batch(tiny_model_dir, tokenizer, tmp_path):
    """pad == EOS for SmolLM2: a pad-id comparison would drop every end-of-turn token from tokens/s and MFU, so packed
    batches count every position (a row's padding tail is a few tokens at most: rows are packed to max_seq_len)."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    from bayling.tokenize.packing import best_fit_decreasing, pack_rows

    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    encoded = encode(tokenizer, conversations(12))
    rows = pack_rows([(e.input_ids, e.labels) for e in encoded], best_fit_decreasing([len(e) for e in encoded], 256))
    data = Dataset.from_list([{"input_ids": r.input_ids, "labels": r.labels, "position_ids": r.position_ids} for r in rows])
    params = TrainParams(max_steps=1, per_device_batch_size=len(rows), learning_rate=1e-4, warmup_ratio=0.0, logging_steps=1,
                         save_steps=100)
    args = training_arguments(params, tmp_path / "ckpt", tmp_path, packed=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    trainer = supervised_trainer_class()(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                                         data_collator=PackedCollator(tokenizer.pad_token_id))
    trainer.train()
    end_of_turn = sum(int((e.input_ids == tokenizer.eos_token_id).sum()) for e in encoded)
    assert end_of_turn >= len(encoded)
    width = max(len(r.input_ids) for r in rows)
    assert trainer.state.num_input_tokens_seen == len(rows) * width  # every position of the batch, end-of-turn tokens included
