"""`train`: method, precision, optimisation, checkpoints and how many processes on how many nodes."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, model_validator

from bayling.config.types import PositiveInt, Section


class LoraParams(Section):
    r: PositiveInt = 16
    alpha: PositiveInt = 32
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.05
    target_modules: Literal["all-linear"] | Annotated[list[str], Field(min_length=1)] = "all-linear"


class PlanParams(Section):
    """What `python -m stages.train --plan` and the fit check before training need to know of the hardware."""

    gpu_memory_gib: Annotated[float, Field(gt=0)] | None = None  # per GPU; null: no fit check before training
    gpu: str | None = None  # e.g. H100, A100: its peak from the table in bayling/train/throughput.py (or set peak_tflops)
    mfu: Annotated[float, Field(gt=0, le=1)] = 0.4  # the model FLOPs utilisation the time estimate assumes
    # a config.json to plan with before the base model is on disk (profiles/shapes/ has the paper models' public shapes)
    shape: str | None = None
    # tokens (padded row slots) in one epoch, for the time estimate before tokenize has run; null: read reports/tokenize/stats.json
    epoch_tokens: PositiveInt | None = None


class TrainParams(Section):
    method: Literal["full", "lora"] = "full"
    lora: LoraParams = LoraParams()
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 where it runs natively (GPU, AVX512-BF16 CPU), else fp32
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = "auto"
    gradient_checkpointing: bool = False
    seed: int = 0
    max_steps: PositiveInt = 60
    # passes over the training rows; when set, it decides the number of steps and max_steps is not used
    epochs: Annotated[float, Field(gt=0)] | None = None
    per_device_batch_size: PositiveInt = 8
    gradient_accumulation_steps: PositiveInt = 1
    learning_rate: Annotated[float, Field(gt=0)] = 5e-5
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: Annotated[float, Field(ge=0, lt=1)] = 0.05
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    max_grad_norm: Annotated[float, Field(ge=0)] = 1.0
    logging_steps: PositiveInt = 5
    save_steps: PositiveInt = 60
    save_total_limit: PositiveInt = 2
    # After a successful run the checkpoints are only needed to continue training; DVC caches and pushes
    # whatever is left in models/checkpoints, so by default they are removed once models/final is written.
    keep_checkpoints: bool = False
    resume: bool = True  # continue from the newest complete checkpoint of the same configuration
    torch_threads: Annotated[int, Field(ge=0)] = 0
    num_gpus: PositiveInt = 1  # processes per node (CPU processes with gloo when there is no GPU)
    num_nodes: PositiveInt = 1
    launcher: Literal["torchrun", "deepspeed"] = "torchrun"
    hostfile: str | None = None  # for the deepspeed launcher across nodes
    deepspeed: Literal["zero2", "zero3", "zero3_offload"] | None = None  # <deepspeed_dir>/<name>.json
    deepspeed_dir: str = "infra/deepspeed"  # where the DeepSpeed configs live, relative to the project
    peak_tflops: Annotated[float, Field(gt=0)] | None = None  # per device, for MFU; None: the device table
    log_system_metrics: bool = True
    plan: PlanParams = PlanParams()

    @model_validator(mode="after")
    def _combinations(self) -> TrainParams:
        if self.hostfile and self.launcher != "deepspeed":
            raise ValueError("hostfile is read by the deepspeed launcher; set launcher: deepspeed")
        return self

    def world_size(self) -> int:
        return self.num_gpus * self.num_nodes

    def steps_for(self, rows: int) -> int:
        """Optimizer steps this run takes over `rows` training rows: `epochs` passes, or max_steps."""
        if self.epochs is None:
            return self.max_steps
        # as the Trainer walks an epoch: each rank's share of the rows (padded up), its micro-batches, and a last
        # optimizer step that takes whatever micro-batches remain
        micro_batches = math.ceil(math.ceil(rows / self.world_size()) / self.per_device_batch_size)
        per_epoch = math.ceil(micro_batches / self.gradient_accumulation_steps)
        return max(1, math.ceil(self.epochs * per_epoch))


# Settings that change what training computes; logging and checkpoint cadence don't invalidate a checkpoint.
NOT_IN_CHECKPOINT_HASH = frozenset({"logging_steps", "save_steps", "save_total_limit", "keep_checkpoints", "resume",
                                    "torch_threads", "log_system_metrics", "peak_tflops", "deepspeed_dir", "plan"})
