"""Supervised fine-tuning with the Hugging Face Trainer: full or LoRA, a loss computed only where it
counts, the model and the TrainingArguments the train params describe."""

from __future__ import annotations

import importlib.util
import inspect
import logging
import os
from pathlib import Path
from typing import Any

from bayling.config.train import TrainParams
from bayling.core.records import IGNORE_INDEX

log = logging.getLogger(__name__)


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
        else:  # no global count (a Trainer that did not count): the mean of micro-batch means, as transformers does
            loss = loss / max(1, int(supervised.sum())) / self.current_gradient_accumulation_steps  # type: ignore[attr-defined]
        return (loss, outputs) if return_outputs else loss


def supervised_trainer_class() -> Any:
    from transformers import Trainer

    class BayLingTrainer(SupervisedTrainer, Trainer):
        def __init__(self, *args: Any, fast_loss: bool = True, row_strata: list[list[float]] | None = None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._row_strata = row_strata  # each row's supervised tokens per mix cell: the sampler stratifies by them
            self._fast_loss = fast_loss and fast_loss_supported(self.model)
            if self._fast_loss:
                # Our loss divides by the supervised-token count of the whole accumulated batch itself, so the
                # Trainer must count it for every model (it does so only for models taking loss kwargs) and
                # must not divide by the accumulation steps again.
                self.model_accepts_loss_kwargs = True
                self.loss_is_scaled_for_ga = True

        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            from bayling.train.batches import EpochSeededSampler, row_lengths

            dataset = train_dataset if train_dataset is not None else self.train_dataset
            batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
            packed = "position_ids" in dataset.column_names
            return EpochSeededSampler(row_lengths(dataset), batch, self.args.data_seed or self.args.seed, group_by_length=not packed,
                                      strata=self._row_strata)

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


def attention_implementation(requested: str) -> str:
    import torch

    flash = torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None
    if requested == "flash_attention_2" and not flash:
        from bayling.core.errors import PipelineError

        raise PipelineError("train.attn_implementation: flash_attention_2 needs a CUDA GPU and the flash-attn package")
    if requested == "auto":
        chosen = "flash_attention_2" if flash else "sdpa"
        if not flash:
            log.info(
                "FlashAttention unavailable (%s); using PyTorch SDPA",
                "no CUDA" if not torch.cuda.is_available() else "flash-attn not installed",
            )
        return chosen
    return requested


def precision(requested: str, deepspeed: str | None = None) -> dict[str, bool]:
    """TrainingArguments' precision flags. `auto` is bf16 wherever bf16 runs natively: a GPU that supports it, or
    a CPU with AVX512-BF16/AMX, where the Trainer autocasts over fp32 weights. On such a CPU the train benchmark's
    precision study (benchmarks/README.md) measured SmolLM2-135M at 1.65x the fp32 speed, with the per-step loss
    of 30 steps within 2% of fp32's (0.8% on average); without native bf16, autocast is slower than fp32, so fp32
    stays. DeepSpeed on CPU stays fp32 under `auto`: its bf16 mode keeps bf16 weights, which that study did not
    measure."""
    import torch

    from bayling.core.hardware import native_bf16

    if requested == "auto":
        cpu_deepspeed = bool(deepspeed) and not torch.cuda.is_available()
        return {"bf16": native_bf16() and not cpu_deepspeed, "fp16": False}
    return {"bf16": requested == "bf16", "fp16": requested == "fp16"}


def base_model(params: TrainParams, model_dir: Path, tokenizer: Any) -> Any:
    """The base model in fp32, its embeddings grown for any token the chat template added."""
    import torch
    from transformers import AutoModelForCausalLM

    implementation = attention_implementation(params.attn_implementation)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation=implementation)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        log.info("resizing embeddings for %d added template tokens", len(tokenizer) - model.get_input_embeddings().weight.shape[0])
        model.resize_token_embeddings(len(tokenizer))  # new rows are the mean of the others: the same on every load
    return model


def build_model(params: TrainParams, model_dir: Path, tokenizer: Any) -> Any:
    model = base_model(params, model_dir, tokenizer)
    model.config.use_cache = False
    if params.method == "lora":
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            r=params.lora.r,
            lora_alpha=params.lora.alpha,
            lora_dropout=params.lora.dropout,
            target_modules=params.lora.target_modules,
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, config)
        if params.gradient_checkpointing:
            model.enable_input_require_grads()
    return model


def merged_lora_model(params: TrainParams, model_dir: Path, tokenizer: Any, adapter_dir: Path) -> Any:
    """The base weights with the saved LoRA adapters merged in, loaded afresh on one process.

    The adapters are saved by the Trainer first, which under ZeRO-3 gathers them from every rank, so the
    merge never needs the (partitioned) weights of the training processes.
    """
    from peft import PeftModel

    return PeftModel.from_pretrained(base_model(params, model_dir, tokenizer), str(adapter_dir)).merge_and_unload()


def training_arguments(params: TrainParams, output_dir: Path, root: Path, packed: bool = False) -> Any:
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
        # Packed batches are one row with no padding, so every token counts; counting "non_padding" there would
        # compare ids with the pad id, which is the end-of-turn token for many tokenizers, and drop every one.
        include_num_input_tokens_seen="all" if packed else "non_padding",
        disable_tqdm=True,
        dataloader_num_workers=0,
        use_cpu=not on_gpu,
        ddp_backend="gloo" if distributed and not on_gpu else None,
        activation_checkpointing=params.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if params.gradient_checkpointing else None,
        deepspeed=str(deepspeed_config(params, root)) if params.deepspeed else None,
        remove_unused_columns=False,
        **precision(params.precision, params.deepspeed),
    )


def deepspeed_config(params: TrainParams, root: Path) -> Path:
    """The DeepSpeed JSON that train.deepspeed names, in train.deepspeed_dir (relative to the project root)."""
    from bayling.core.errors import PipelineError

    directory = Path(params.deepspeed_dir)
    path = (directory if directory.is_absolute() else root / directory) / f"{params.deepspeed}.json"
    if not path.is_file():
        raise PipelineError(f"train.deepspeed: {path} not found (train.deepspeed_dir is {params.deepspeed_dir})")
    return path
