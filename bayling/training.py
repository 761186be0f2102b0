"""Supervised fine-tuning with the Hugging Face Trainer on assistant-masked conversations."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bayling.chat import IGNORE_INDEX


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


def training_arguments(params: Any, output_dir: Path) -> Any:
    from transformers import TrainingArguments

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
        use_cpu=not _cuda_available(),
        bf16=_bf16_available(),
    )


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _bf16_available() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def make_step_logger(logger: Any) -> Any:
    """A TrainerCallback that forwards the Trainer's log dicts to a ResilientLogger with the step."""
    from transformers import TrainerCallback

    class StepLogger(TrainerCallback):
        def __init__(self) -> None:
            self.history: list[dict[str, float]] = []
            self._t0 = time.perf_counter()

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if not state.is_world_process_zero or not logs:
                return
            numeric = {k: float(v) for k, v in logs.items() if isinstance(v, (int, float)) and math.isfinite(v)}
            elapsed = time.perf_counter() - self._t0
            if state.num_input_tokens_seen and elapsed > 0:
                numeric["tokens_per_s"] = state.num_input_tokens_seen / elapsed
            numeric["step"] = state.global_step
            self.history.append(numeric)
            logger.log_metrics({k: v for k, v in numeric.items() if k != "step"}, step=state.global_step)

    return StepLogger()


def trainable_tokens(dataset: Any) -> int:
    """Label positions that carry loss, counted on the Arrow column without materialising rows."""
    import pyarrow.compute as pc

    labels = dataset.data.column("labels").combine_chunks().flatten()
    return int(pc.sum(pc.not_equal(labels, IGNORE_INDEX)).as_py() or 0)
