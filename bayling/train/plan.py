"""A capacity plan before launch: will this training configuration fit in the declared GPU memory, how many
tokens and FLOPs a step takes, and how long an epoch should last, worked out from the model's config alone.

The model is built on PyTorch's meta device from its config, so no weights are read or allocated.
Model states (parameters, gradients, optimiser states) per GPU come from DeepSpeed's own estimators
(`estimate_zero2_model_states_mem_needs`, `estimate_zero3_model_states_mem_needs`) for ZeRO-2/3, and
from the same accounting without sharding for plain data parallelism: bf16/fp16 mixed precision keeps
16-bit weights, fp32 master weights, gradients and Adam's two moments, 2 + 16 bytes per trained
parameter (4 + 4 + 8 = 16 in fp32); frozen LoRA base weights cost their own width only.

Activations have no estimator to reuse, so this module states its formula (Korthikanti et al., 2022,
"Reducing Activation Recomputation in Large Transformer Models", eq. 2, with FlashAttention/SDPA, which
keep no s x s score matrix): per layer and token, 34 * hidden bytes at 16-bit (twice that at fp32),
scaled by (2 * hidden + 3 * intermediate) / (2 * hidden + 2 * 4 * hidden) for a gated (SwiGLU) MLP's
wider middle; with gradient checkpointing, 2 * hidden bytes per layer and token are kept and one
layer's full activations are live during its recomputation. The head's logits cost 4 bytes per
vocabulary entry per supervised token (the train stage's head) or per token (a full-vocabulary head).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bayling.config.train import TrainParams
from bayling.core.errors import PipelineError

GIB = 2**30
HEADROOM = 0.9  # of the declared memory; the rest is the CUDA context, allocator fragmentation and buffers
DEEPSPEED_BUFFER_FACTOR = 1.5  # DeepSpeed's own default in its estimators (CPU side)


@dataclass(frozen=True)
class Shape:
    """What the plan needs to know about a model, read from the meta-device build."""

    parameters: int
    trainable: int
    largest_layer: int  # parameters of the largest single module (ZeRO-3 gathers one at a time)
    layers: int
    hidden: int
    intermediate: int
    vocab: int
    heads: int


@dataclass
class Plan:
    shape: Shape
    settings: dict[str, Any]
    bytes_per_gpu: dict[str, float]
    tokens_per_step: int
    flops_per_step: float
    seconds_per_step: float | None
    epoch_steps: int | None
    epoch_hours: float | None
    gpu_memory_gib: float | None
    fits: bool | None
    notes: list[str] = field(default_factory=list)

    @property
    def total_gib(self) -> float:
        return sum(self.bytes_per_gpu.values()) / GIB

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "total_gib_per_gpu": round(self.total_gib, 2)}

    def describe(self) -> str:
        s = self.shape
        lines = [
            f"model: {s.parameters / 1e9:.2f}B parameters ({s.layers} layers x {s.hidden} wide, vocabulary {s.vocab}); "
            f"trainable {s.trainable / 1e6:,.1f}M",
            "setup: " + ", ".join(f"{k} {v}" for k, v in self.settings.items()),
            "memory per GPU:",
            *(f"  {name:<18} {value / GIB:8.2f} GiB" for name, value in self.bytes_per_gpu.items()),
            f"  {'total':<18} {self.total_gib:8.2f} GiB"
            + (f" of {self.gpu_memory_gib:.0f} GiB declared ({HEADROOM:.0%} usable)" if self.gpu_memory_gib else ""),
            f"tokens per step: {self.tokens_per_step:,}; FLOPs per step: {self.flops_per_step:.3e}",
        ]
        if self.seconds_per_step is not None:
            lines.append(f"at {self.settings['mfu']:.0%} MFU: {self.seconds_per_step:.2f} s per step"
                         + (f", {self.epoch_steps:,} steps and {self.epoch_hours:.1f} h per epoch" if self.epoch_hours is not None else ""))
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def meta_model(config: Any, params: TrainParams) -> Any:
    """The model (with LoRA adapters when configured) on the meta device: shapes without memory."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    if params.method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=params.lora.r, lora_alpha=params.lora.alpha, lora_dropout=params.lora.dropout,
                                                 target_modules=params.lora.target_modules, task_type="CAUSAL_LM"))
    return model


def shape_of(model: Any) -> Shape:
    from bayling.train.trainer import unwrapped

    base = unwrapped(model)
    config = base.config.get_text_config()
    unique = {id(p): p for p in model.parameters()}.values()  # tied embeddings count once
    parameters = sum(p.numel() for p in unique)
    trainable = sum(p.numel() for p in unique if p.requires_grad)
    largest = max(sum(p.numel() for p in module.parameters(recurse=False)) for module in model.modules())
    return Shape(parameters=parameters, trainable=trainable, largest_layer=largest, layers=config.num_hidden_layers,
                 hidden=config.hidden_size, intermediate=getattr(config, "intermediate_size", 4 * config.hidden_size),
                 vocab=config.vocab_size, heads=config.num_attention_heads)


def activation_bytes(shape: Shape, tokens_per_gpu: int, half: bool, checkpointing: bool, supervised_share: float,
                     fast_head: bool) -> tuple[float, float]:
    """(activations of the layers, the head's logits) for one micro-batch on one GPU, by the formula in the docstring."""
    width = 1 if half else 2
    gated = (2 * shape.hidden + 3 * shape.intermediate) / (2 * shape.hidden + 8 * shape.hidden)
    per_layer_token = 34 * shape.hidden * gated * width
    if checkpointing:
        layers = 2 * shape.hidden * width * shape.layers * tokens_per_gpu + per_layer_token * tokens_per_gpu
    else:
        layers = per_layer_token * shape.layers * tokens_per_gpu
    logits_tokens = tokens_per_gpu * (supervised_share if fast_head else 1.0)
    return layers, 4.0 * shape.vocab * logits_tokens


def model_state_bytes(shape: Shape, params: TrainParams, half: bool) -> dict[str, float]:
    """Parameters, gradients and optimiser states per GPU; DeepSpeed's estimators for ZeRO."""
    gpus, nodes = params.num_gpus, params.num_nodes
    if params.deepspeed in ("zero2",):
        from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

        _, gpu = estimate_zero2_model_states_mem_needs(shape.trainable, gpus, nodes, cpu_offload=False)
        frozen = (shape.parameters - shape.trainable) * 2
        return {"model states": float(gpu + frozen)}
    if params.deepspeed in ("zero3", "zero3_offload"):
        from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs

        offload = params.deepspeed == "zero3_offload"
        _, gpu, _ = estimate_zero3_model_states_mem_needs(shape.trainable, shape.largest_layer, gpus, nodes, cpu_offload=offload,
                                                          cpu_offload_params=offload, zero_init=True)
        frozen = (shape.parameters - shape.trainable) * 2 / (gpus * nodes)
        return {"model states": float(gpu + frozen)}
    weight = 2 if half else 4
    frozen = (shape.parameters - shape.trainable) * weight
    trained = shape.trainable * ((2 + 16) if half else 16)
    return {"model states": float(frozen + trained)}


def make_plan(config: Any, params: TrainParams, max_seq_len: int, *, gpu_memory_gib: float | None, peak_tflops: float | None,
              mfu: float, epoch_tokens: int | None = None, supervised_share: float = 0.3, fast_head: bool = True) -> Plan:
    from bayling.train.throughput import flops_per_token

    model = meta_model(config, params)
    shape = shape_of(model)
    half = params.precision in ("bf16", "fp16") or (params.precision == "auto" and peak_tflops is not None)
    tokens_per_gpu = params.per_device_batch_size * max_seq_len
    tokens_per_step = tokens_per_gpu * params.gradient_accumulation_steps * params.world_size()
    layers, logits = activation_bytes(shape, tokens_per_gpu, half, params.gradient_checkpointing, supervised_share, fast_head)
    memory = {**model_state_bytes(shape, params, half), "activations": layers, "logits": logits}
    per_token = flops_per_token(model, max_seq_len, lora=params.method == "lora")
    flops_step = per_token * tokens_per_step
    seconds = flops_step / (params.world_size() * peak_tflops * 1e12 * mfu) if peak_tflops else None
    steps = math.ceil(epoch_tokens / tokens_per_step) if epoch_tokens else None
    hours = seconds * steps / 3600 if seconds is not None and steps is not None else None
    settings = {"method": params.method, "precision": "16-bit" if half else "fp32", "zero": params.deepspeed or "none",
                "gpus": f"{params.num_gpus} x {params.num_nodes} node(s)", "micro_batch": params.per_device_batch_size,
                "accumulation": params.gradient_accumulation_steps, "max_seq_len": max_seq_len,
                "gradient_checkpointing": params.gradient_checkpointing, "mfu": mfu}
    fits = None if gpu_memory_gib is None else sum(memory.values()) <= gpu_memory_gib * GIB * HEADROOM
    return Plan(shape, settings, memory, tokens_per_step, flops_step, seconds, steps, hours, gpu_memory_gib, fits)


def _changes(params: TrainParams) -> list[tuple[str, dict[str, Any]]]:
    """Changes that lower memory per GPU, cheapest first."""
    changes: list[tuple[str, dict[str, Any]]] = []
    if not params.gradient_checkpointing:
        changes.append(("train.gradient_checkpointing: true", {"gradient_checkpointing": True}))
    batch = params.per_device_batch_size
    while batch > 1:
        batch //= 2
        accumulation = params.gradient_accumulation_steps * (params.per_device_batch_size // batch)
        changes.append((f"train.per_device_batch_size: {batch} with gradient_accumulation_steps: {accumulation}",
                        {"per_device_batch_size": batch, "gradient_accumulation_steps": accumulation}))
    order = [None, "zero2", "zero3", "zero3_offload"]
    for stage in order[order.index(params.deepspeed) + 1:]:
        changes.append((f"train.deepspeed: {stage}", {"deepspeed": stage}))
    if params.method == "full":
        changes.append(("train.method: lora", {"method": "lora"}))
    for gpus in (2, 4, 8):
        if gpus > params.num_gpus:
            changes.append((f"train.num_gpus: {gpus}", {"num_gpus": gpus}))
    return changes


def smallest_change_that_fits(config: Any, params: TrainParams, max_seq_len: int, **kwargs: Any) -> tuple[str, Plan] | None:
    """The first single change, cheapest first, after which the plan fits; failing that, the shortest run of
    those changes taken in order (checkpointing, smaller micro-batches with more accumulation, a higher ZeRO
    stage, LoRA, more GPUs), each kept once made."""
    changes = _changes(params)
    for label, change in changes:
        plan = make_plan(config, params.model_copy(update=change), max_seq_len, **kwargs)
        if plan.fits:
            return label, plan
    applied: list[str] = []
    current = params
    for label, change in changes:
        # a smaller micro-batch replaces the previous one; everything else adds up
        applied = [a for a in applied if not (a.startswith("train.per_device_batch_size") and label.startswith("train.per_device"))]
        applied = [a for a in applied if not (a.startswith("train.deepspeed") and label.startswith("train.deepspeed"))]
        applied = [a for a in applied if not (a.startswith("train.num_gpus") and label.startswith("train.num_gpus"))]
        applied.append(label)
        current = current.model_copy(update=change)
        plan = make_plan(config, current, max_seq_len, **kwargs)
        if plan.fits:
            return " and ".join(applied), plan
    return None


def recommended(config: Any, params: TrainParams, max_seq_len: int, **kwargs: Any) -> tuple[dict[str, Any], Plan] | None:
    """The fastest layout that fits on the configured GPUs at the same global batch, by a fixed preference: no
    recomputation before gradient checkpointing (about a third more compute), then the lowest ZeRO stage
    (plain data parallelism, ZeRO-2, ZeRO-3, ZeRO-3 with CPU offload: each adds communication), then the largest micro-batch (fewer,
    fuller kernels). Returns (the train params that differ from `params`, its plan), or None if none fits."""
    per_gpu_rows = params.per_device_batch_size * params.gradient_accumulation_steps
    micro_batches = [b for b in range(per_gpu_rows, 0, -1) if per_gpu_rows % b == 0]
    for checkpointing in (False, True):
        for stage in (None, "zero2", "zero3", "zero3_offload"):
            for batch in micro_batches:
                layout = {"gradient_checkpointing": checkpointing, "deepspeed": stage, "per_device_batch_size": batch,
                          "gradient_accumulation_steps": per_gpu_rows // batch}
                plan = make_plan(config, params.model_copy(update=layout), max_seq_len, **kwargs)
                if plan.fits:
                    return {k: v for k, v in layout.items() if getattr(params, k) != v}, plan
    return None


def check_fits(plan: Plan, config: Any, params: TrainParams, max_seq_len: int, **kwargs: Any) -> None:
    """Refuse a configuration that cannot fit, naming the smallest change that would."""
    if plan.fits is not False:
        return
    found = smallest_change_that_fits(config, params, max_seq_len, **kwargs)
    need = f"{plan.total_gib:.1f} GiB per GPU, above {HEADROOM:.0%} of the declared {plan.gpu_memory_gib:.0f} GiB"
    if found is None:
        raise PipelineError(f"this training configuration does not fit: {need}; no single change found makes it fit "
                            "(more GPUs with ZeRO-3, a shorter max_seq_len, or a smaller model)")
    label, fitted = found
    raise PipelineError(f"this training configuration does not fit: {need}. The smallest change that fits: {label} "
                        f"({fitted.total_gib:.1f} GiB per GPU). Run `python -m stages.train --plan` for the breakdown")


def load_config(model_dir: Path | str) -> Any:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(model_dir))


def _is_this_base_model(folder: Path, base_model: Any) -> bool:
    """Whether `folder` holds the base model params describe now, not one an earlier configuration materialised."""
    try:
        provenance = json.loads((folder / "provenance.json").read_text("utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    if provenance.get("source") != base_model.source:
        return False
    return base_model.source != "hf" or provenance.get("hf_id") == base_model.hf_id


def model_config(base_model: Any, root: Path, planned: str | None = None) -> Any:
    """The config to plan with: train.plan.shape (a config.json) when set, checked against models/base when that
    holds this configuration's base model (it may still hold an earlier configuration's); else the base
    model's HF copy when the base_model step has run; else base_model.hf_id (a hub id, which needs the hub,
    or a local folder)."""
    if planned:
        from transformers import AutoConfig

        path = root / planned
        if not path.is_file():
            raise PipelineError(f"train.plan.shape: {path} does not exist")
        declared = AutoConfig.for_model(**json.loads(path.read_text("utf-8")))
        local = root / base_model.path / "config.json"
        if local.is_file() and _is_this_base_model(local.parent, base_model):
            downloaded = json.loads(local.read_text("utf-8"))
            keys = ("hidden_size", "num_hidden_layers", "intermediate_size", "vocab_size")
            if any(downloaded.get(k) != getattr(declared, k, None) for k in keys):
                raise PipelineError(f"train.plan.shape ({planned}) does not match the base model in {local.parent}: "
                                    + ", ".join(f"{k} {getattr(declared, k, None)} vs {downloaded.get(k)}" for k in keys)
                                    + ". Point train.plan.shape at this model's shape, or set it to null to plan from models/base")
        return declared
    local = root / base_model.path / "config.json"
    if local.is_file():
        return load_config(local.parent)
    if base_model.hf_id:
        try:
            return load_config(base_model.hf_id)
        except OSError as exc:
            raise PipelineError(f"cannot read the config of {base_model.hf_id}: {exc}") from None
    raise PipelineError(f"no model config to plan with: {local} does not exist yet (run the base_model step) and base_model.hf_id is "
                        "not set")


def plan_for(train: TrainParams, base_model: Any, max_seq_len: int, root: Path, check: bool = False, advise: bool = False) -> Plan:
    """The plan of the configured run: the model's config, the declared GPU, the tokenized data's size if known.
    With `advise`, its notes name the recommended layout; with `check`, a plan that does not fit raises,
    naming the smallest change that would."""
    from bayling.train.throughput import PEAK_TFLOPS

    peak = train.peak_tflops
    if peak is None and train.plan.gpu:
        matches = [tflops for name, tflops in PEAK_TFLOPS.items() if name.lower() == train.plan.gpu.lower()]
        if not matches:
            known = ", ".join(PEAK_TFLOPS)
            raise PipelineError(f"train.plan.gpu: unknown GPU {train.plan.gpu!r}; known: {known} (or set train.peak_tflops)")
        peak = matches[0]
    stats = root / "reports" / "tokenize" / "stats.json"
    epoch_tokens, share = train.plan.epoch_tokens, 0.3
    if stats.is_file():
        train_stats = json.loads(stats.read_text("utf-8")).get("train", {})
        if epoch_tokens is None:  # a declared size wins: stats.json may describe another configuration's data
            epoch_tokens = train_stats.get("row_slots") or train_stats.get("tokens")
        if train_stats.get("tokens"):
            share = train_stats.get("supervised_tokens", 0) / train_stats["tokens"]
    config = model_config(base_model, root, train.plan.shape)
    settings = {"gpu_memory_gib": train.plan.gpu_memory_gib, "peak_tflops": peak, "mfu": train.plan.mfu, "epoch_tokens": epoch_tokens,
                "supervised_share": share}
    plan = make_plan(config, train, max_seq_len, **settings)
    if advise and train.plan.gpu_memory_gib:
        best = recommended(config, train, max_seq_len, **settings)
        if best is None:
            plan.notes.append("no layout of this global batch fits these GPUs, even with ZeRO-3 offload and checkpointing")
        elif not best[0]:
            plan.notes.append("this is the recommended layout: the fastest at this global batch that fits")
        else:
            change = ", ".join(f"train.{k}: {'null' if v is None else str(v).lower()}" for k, v in best[0].items())
            plan.notes.append(f"recommended at this global batch: {change} ({best[1].total_gib:.1f} GiB per GPU)")
    if epoch_tokens is None:
        plan.notes.append("no tokenized data yet (reports/tokenize/stats.json): no epoch estimate")
    if peak is None:
        plan.notes.append("no GPU peak known (train.plan.gpu or train.peak_tflops): no time estimate")
    if check:
        check_fits(plan, config, train, max_seq_len, **settings)
    return plan
