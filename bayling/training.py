"""Supervised fine-tuning with the Hugging Face Trainer: full or LoRA, packed or padding-free batches,
a loss computed only where it counts, crash-safe checkpoints, and the numbers a lab watches."""

from __future__ import annotations

import importlib.util
import inspect
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bayling.chat import IGNORE_INDEX

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- batches
@dataclass(frozen=True)
class PaddingCollator:
    """Right-pads a batch: input ids with the pad id, labels with IGNORE_INDEX, attention mask with 0."""

    pad_token_id: int

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        input_ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((len(features), width), dtype=torch.long)
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            input_ids[row, :n] = torch.as_tensor(f["input_ids"])
            labels[row, :n] = torch.as_tensor(f["labels"])
            attention[row, :n] = 1
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention}


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


# ---------------------------------------------------------------- loss
class SupervisedTrainer:
    """Mixin for transformers.Trainer: the language-model head runs only on positions whose next token is
    supervised (about a third of them in a translation chat), and the summed loss is divided by the
    supervised-token count of the whole accumulated batch across devices, so 1x8 and 8x1 agree.

    The forward still goes through the (DDP / DeepSpeed / PEFT) wrapper with `logits_to_keep` empty;
    the final norm's output is taken by a forward hook and only the selected rows meet the head.
    """

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None) -> Any:
        import torch
        import torch.nn.functional as F

        if not getattr(self, "_fast_loss", False):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)  # type: ignore[misc]
        inner = unwrapped(self.accelerator.unwrap_model(model))  # type: ignore[attr-defined]
        labels = inputs.pop("labels")
        captured: dict[str, Any] = {}
        hook = inner.get_decoder().norm.register_forward_hook(lambda module, args, output: captured.__setitem__("hidden", output))
        try:
            outputs = model(**inputs, logits_to_keep=torch.zeros(0, dtype=torch.long, device=labels.device))
        finally:
            hook.remove()
        targets = labels[:, 1:]
        supervised = targets != IGNORE_INDEX
        hidden = captured["hidden"][:, :-1][supervised]
        logits = inner.get_output_embeddings()(hidden)
        loss = F.cross_entropy(logits.float(), targets[supervised], reduction="sum")
        if num_items_in_batch is not None:
            loss = loss / num_items_in_batch
            if self.args.average_tokens_across_devices and self.args.world_size > 1:  # type: ignore[attr-defined]
                loss = loss * self.accelerator.num_processes  # type: ignore[attr-defined]
        else:
            loss = loss / max(1, int(supervised.sum()))
        return (loss, outputs) if return_outputs else loss


def supervised_trainer_class() -> Any:
    from transformers import Trainer

    class BayLingTrainer(SupervisedTrainer, Trainer):
        def __init__(self, *args: Any, fast_loss: bool = True, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._fast_loss = fast_loss and fast_loss_supported(self.model)
            if self._fast_loss:
                # our loss divides by the accumulated token count itself; the Trainer must not divide again
                self.loss_is_scaled_for_ga = True

    return BayLingTrainer


def unwrapped(model: Any) -> Any:
    """The transformers model inside a PEFT wrapper (the same object a LoRA merge returns)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def fast_loss_supported(model: Any) -> bool:
    """A decoder with a final `norm` feeding a plain head, and a forward taking a tensor `logits_to_keep`."""
    base = unwrapped(model)
    config = base.config
    if any(getattr(config, name, None) for name in ("final_logit_softcapping", "logit_scale", "logits_scaling")):
        return False
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else None
    return decoder is not None and hasattr(decoder, "norm") and "logits_to_keep" in inspect.signature(base.forward).parameters


# ---------------------------------------------------------------- model
def attention_implementation(requested: str) -> str:
    import torch

    flash = torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None
    if requested == "flash_attention_2" and not flash:
        from bayling.errors import PipelineError

        raise PipelineError("train.attn_implementation: flash_attention_2 needs a CUDA GPU and the flash-attn package")
    if requested == "auto":
        chosen = "flash_attention_2" if flash else "sdpa"
        if not flash:
            log.info("FlashAttention unavailable (%s); using PyTorch SDPA", "no CUDA" if not torch.cuda.is_available() else "flash-attn not installed")
        return chosen
    return requested


def precision(requested: str) -> dict[str, bool]:
    import torch

    if requested == "auto":
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return {"bf16": bf16, "fp16": False}
    return {"bf16": requested == "bf16", "fp16": requested == "fp16"}


def build_model(params: Any, model_dir: Path, tokenizer: Any) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation=attention_implementation(params.attn_implementation))
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        log.info("resizing embeddings for %d added template tokens", len(tokenizer) - model.get_input_embeddings().weight.shape[0])
        model.resize_token_embeddings(len(tokenizer))
    model.config.use_cache = False
    if params.method == "lora":
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(r=params.lora.r, lora_alpha=params.lora.alpha, lora_dropout=params.lora.dropout,
                            target_modules=params.lora.target_modules, task_type="CAUSAL_LM")
        model = get_peft_model(model, config)
        if params.gradient_checkpointing:
            model.enable_input_require_grads()
    return model


def export_model(model: Any, method: str) -> Any:
    """The model to save as models/final: LoRA adapters merged into the base weights."""
    if method == "lora":
        return model.merge_and_unload()
    return model


def training_arguments(params: Any, output_dir: Path) -> Any:
    import torch
    from transformers import TrainingArguments

    on_gpu = torch.cuda.is_available()
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return TrainingArguments(
        output_dir=str(output_dir),
        max_steps=params.max_steps,
        per_device_train_batch_size=params.per_device_batch_size,
        gradient_accumulation_steps=params.gradient_accumulation_steps,
        learning_rate=params.learning_rate,
        lr_scheduler_type=params.lr_scheduler,
        warmup_steps=params.warmup_ratio,
        weight_decay=params.weight_decay,
        max_grad_norm=params.max_grad_norm,
        logging_steps=params.logging_steps,
        save_strategy="steps",
        save_steps=params.save_steps,
        save_total_limit=params.save_total_limit,
        seed=params.seed,
        data_seed=params.seed,
        report_to=[],
        train_sampling_strategy="group_by_length",
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=True,
        dataloader_num_workers=0,
        use_cpu=not on_gpu,
        ddp_backend="gloo" if distributed and not on_gpu else None,
        activation_checkpointing=params.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if params.gradient_checkpointing else None,
        deepspeed=str(REPO / "infra" / "deepspeed" / f"{params.deepspeed}.json") if params.deepspeed else None,
        remove_unused_columns=False,
        **precision(params.precision),
    )


# ---------------------------------------------------------------- throughput
PEAK_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "L4": 121.0, "V100": 125.0, "T4": 65.0}


def flops_per_token(model: Any, sequence_length: int, lora: bool = False) -> float:
    """Training FLOPs per token: 6N for the matmuls (4N with frozen base weights under LoRA) plus the
    attention scores, 12 * layers * width * sequence length (the PaLM appendix B estimate)."""
    base = unwrapped(model)
    config = base.config
    params = sum(p.numel() for p in base.parameters())
    if not getattr(config, "tie_word_embeddings", False):
        params -= base.get_input_embeddings().weight.numel()  # a lookup, not a matmul
    attention = 12 * config.num_hidden_layers * config.hidden_size * sequence_length
    return (4 if lora else 6) * params + attention


def peak_flops(configured_tflops: float | None) -> float | None:
    """Peak dense FLOP/s of one device: from params, or the table by GPU name; None on an unknown CPU."""
    import torch

    if configured_tflops:
        return configured_tflops * 1e12
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        for key, tflops in PEAK_TFLOPS.items():
            if key in name:
                return tflops * 1e12
    return None


def make_step_logger(logger: Any, flops_per_token_value: float, peak: float | None, world_size: int) -> Any:
    """A TrainerCallback that sends the Trainer's logs, tokens/s and MFU to a ResilientLogger, on rank 0 only."""
    from transformers import TrainerCallback

    class StepLogger(TrainerCallback):
        def __init__(self) -> None:
            self.history: list[dict[str, float]] = []
            self._last: tuple[float, int] | None = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self._last = (time.perf_counter(), int(state.num_input_tokens_seen or 0))

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if not state.is_world_process_zero or not logs:
                return
            numeric = {k: float(v) for k, v in logs.items() if isinstance(v, (int, float)) and math.isfinite(v)}
            now, seen = time.perf_counter(), int(state.num_input_tokens_seen or 0)
            if self._last and now > self._last[0] and seen > self._last[1]:
                rate = (seen - self._last[1]) / (now - self._last[0])
                numeric["tokens_per_s"] = rate
                if peak:
                    numeric["mfu"] = rate * flops_per_token_value / (peak * world_size)
            self._last = (now, seen)
            numeric["step"] = state.global_step
            self.history.append(numeric)
            logger.log_metrics({k: v for k, v in numeric.items() if k != "step"}, step=state.global_step)

    return StepLogger()


def make_checkpoint_marker(expected_hash: str) -> Any:
    """A TrainerCallback that writes the completion marker into each checkpoint after it is saved."""
    from transformers import TrainerCallback

    from bayling.checkpoints import mark_complete

    class CheckpointMarker(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.is_world_process_zero:
                path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if path.is_dir():
                    mark_complete(path, expected_hash, state.global_step)

    return CheckpointMarker()


def trainable_tokens(dataset: Any) -> int:
    """Label positions that carry loss, counted on the Arrow column without materialising rows."""
    import pyarrow.compute as pc

    labels = dataset.data.column("labels").combine_chunks().flatten()
    return int(pc.sum(pc.not_equal(labels, IGNORE_INDEX)).as_py() or 0)
