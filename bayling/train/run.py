"""The train stage's work on one process of however many were launched: check the tokenized data
against the base tokenizer, resume from the newest complete checkpoint of the same configuration,
train, and export models/final."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bayling.config.base_model import BaseModelParams
from bayling.config.train import NOT_IN_CHECKPOINT_HASH, TrainParams
from bayling.core.composition import SEGMENT_COLUMNS, Tally, drawn_tally, row_strata
from bayling.core.errors import PipelineError
from bayling.core.tracking import ResilientLogger

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainPaths:
    tokenized: Path
    checkpoints: Path
    final: Path

    @staticmethod
    def under(root: Path) -> TrainPaths:
        return TrainPaths(root / "data" / "tokenized", root / "models" / "checkpoints", root / "models" / "final")


@dataclass
class TrainResult:
    metrics: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per logged step
    main_process: bool = True
    drawn: Tally | None = None  # what the steps trained on, per category (None: rows without composition columns)


def _code_hash(root: Path) -> dict[str, str]:
    """The training code a checkpoint was written by: resuming across a code change would mix two runs."""
    from bayling.core.lineage import sha256_bytes

    package = Path(__file__).resolve().parent
    files = {f"bayling/train/{p.name}": p for p in sorted(package.glob("*.py"))}
    return {name: sha256_bytes(path.read_bytes()) for name, path in files.items()}


@dataclass
class _TrainingData:
    """The tokenized training split as the model sees it, and what its rows are made of (counted, never trained on)."""

    stored: dict[str, Any]  # data/tokenized/fingerprint.json
    tokenizer: Any
    dataset: Any
    segments: Any  # the composition columns, or None when the rows have none
    strata: Any
    packed: bool


def _load_training_data(base_model: BaseModelParams, model_dir: Path, paths: TrainPaths, logger: ResilientLogger) -> _TrainingData:
    """The tokenized data, refused when another tokenizer or chat template than the base model's made it."""
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    from bayling.core.lineage import tokenizer_fingerprint, tokenizer_only_fingerprint

    fingerprint_file = paths.tokenized / "fingerprint.json"
    if not fingerprint_file.exists():
        raise PipelineError("data/tokenized/fingerprint.json not found: run `python -m stages.tokenize` first")
    stored = json.loads(fingerprint_file.read_text("utf-8"))
    tokenizer = AutoTokenizer.from_pretrained(paths.tokenized / "tokenizer")
    current = tokenizer_fingerprint(model_dir, tokenizer.chat_template or "", stored["max_seq_len"])
    if tokenizer_only_fingerprint(current) != tokenizer_only_fingerprint(stored):
        raise PipelineError(
            f"data/tokenized was made with a different tokenizer or chat template than {base_model.path}; "
            "re-run `python -m stages.tokenize` (or `dvc repro`)"
        )
    dataset = load_from_disk(str(paths.tokenized))["train"]
    # what each row is made of is counted here, never fed to the model
    composition_columns = [c for c in SEGMENT_COLUMNS if c in dataset.column_names]
    segments = dataset.select_columns(composition_columns) if len(composition_columns) == len(SEGMENT_COLUMNS) else None
    strata = row_strata(segments) if segments is not None else None
    dataset = dataset.remove_columns(composition_columns)
    packed = "position_ids" in dataset.column_names
    logger.log_params({"data.train_rows": len(dataset), "data.fingerprint": stored["fingerprint"], "data.packed": packed})
    return _TrainingData(stored, tokenizer, dataset, segments, strata, packed)


def _in_steps(train: TrainParams, rows: int, logger: ResilientLogger) -> TrainParams:
    """Epochs become a step count here, so checkpoints and resume work in steps as before."""
    if train.epochs is None:
        return train
    train = train.model_copy(update={"max_steps": train.steps_for(rows)})
    log.info("%s epochs over %d rows: %d steps", train.epochs, rows, train.max_steps)
    logger.log_params({"train.effective_max_steps": train.max_steps})
    return train


def _seeded_model(train: TrainParams, model_dir: Path, data: _TrainingData) -> tuple[Any, Any]:
    """The model to train and the generation config it is exported with (ending turns where the template does)."""
    # Seeded before the model is built: LoRA initialises its adapters from the global RNG, and the Trainer
    # seeds only later, so without this two runs of the same configuration would start from other weights.
    from transformers import set_seed

    from bayling.tokenize.packing import packing_refusal
    from bayling.tokenize.templates import end_of_turn_ids
    from bayling.train.trainer import build_model, unwrapped

    set_seed(train.seed)
    model = build_model(train, model_dir, data.tokenizer)
    if data.packed and (refusal := packing_refusal(unwrapped(model).config)):
        raise PipelineError(f"data/tokenized is packed, but {refusal}")
    end_of_turn = data.stored["settings"].get("end_of_turn") or data.tokenizer.eos_token
    generation = unwrapped(model).generation_config
    generation.eos_token_id = end_of_turn_ids(data.tokenizer, end_of_turn)
    generation.pad_token_id = data.tokenizer.pad_token_id
    return model, generation


def _resume_point(train: TrainParams, base_model: BaseModelParams, root: Path, paths: TrainPaths, fingerprint: str,
                  main_process: bool, logger: ResilientLogger) -> tuple[str, Path | None]:
    """The configuration hash checkpoints are marked with, and the newest complete checkpoint of it to resume
    from. The main process clears what cannot be resumed (and the previous models/final)."""
    from bayling.train import checkpoints

    settings = {k: v for k, v in train.model_dump(mode="json").items() if k not in NOT_IN_CHECKPOINT_HASH}
    expected = checkpoints.config_hash({"train": settings, "data": fingerprint, "base": str(base_model.path),
                                        "code": _code_hash(root)})
    resume_from = checkpoints.newest_complete(paths.checkpoints, expected, before_step=train.max_steps) if train.resume else None
    if main_process:
        for stale in checkpoints.prune(paths.checkpoints, expected) if train.resume else []:
            log.info("removed %s (incomplete, or from another configuration)", stale.name)
        if not train.resume and paths.checkpoints.exists():
            shutil.rmtree(paths.checkpoints)
        if paths.final.exists():
            shutil.rmtree(paths.final)
    if resume_from:
        log.info("resuming from %s", resume_from.relative_to(root))
    logger.log_params({"resumed_from": str(resume_from)})
    return expected, resume_from


def _trainer(train: TrainParams, model: Any, data: _TrainingData, root: Path, paths: TrainPaths, expected: str,
             logger: ResilientLogger) -> tuple[Any, Any]:
    """The supervised Trainer (with its collator, checkpoint marker and progress) and the step logger it reports to."""
    from bayling.core.progress import trainer_callback
    from bayling.train import checkpoints
    from bayling.train.batches import PackedCollator, padding_collator
    from bayling.train.throughput import flops_per_token, make_step_logger, peak_flops
    from bayling.train.trainer import supervised_trainer_class, training_arguments

    flops = flops_per_token(model, data.stored["max_seq_len"], lora=train.method == "lora")
    step_logger = make_step_logger(logger, flops, peak_flops(train.peak_tflops), train.world_size())
    trainer = supervised_trainer_class()(
        model=model,
        args=training_arguments(train, paths.checkpoints, root, packed=data.packed),
        train_dataset=data.dataset,
        data_collator=PackedCollator(data.tokenizer.pad_token_id) if data.packed else padding_collator(data.tokenizer),
        processing_class=data.tokenizer,
        callbacks=[step_logger, checkpoints.make_checkpoint_marker(expected), trainer_callback()],
        row_strata=data.strata,
    )
    return trainer, step_logger


def _export(train: TrainParams, trainer: Any, model_dir: Path, tokenizer: Any, generation: Any, paths: TrainPaths,
            main_process: bool) -> None:
    """Write models/final: LoRA adapters merged into the base weights, or the fully fine-tuned model."""
    from bayling.train.trainer import merged_lora_model, unwrapped

    if train.method == "lora":
        adapter = paths.checkpoints / "adapter"
        trainer.save_model(str(adapter))  # every rank takes part: under ZeRO-3 the adapters are gathered
        if main_process:
            final = merged_lora_model(train, model_dir, tokenizer, adapter)
            final.generation_config = generation
            final.config.use_cache = True
            final.save_pretrained(paths.final, safe_serialization=True)
            tokenizer.save_pretrained(paths.final)
            shutil.rmtree(adapter)
    else:
        unwrapped(trainer.model).config.use_cache = True
        trainer.save_model(str(paths.final))
        if main_process:
            # Trainer pickles its arguments here, absolute paths included, so the same training in another
            # checkout would write a different model folder; the settings are in run.json and MLflow instead.
            (paths.final / "training_args.bin").unlink(missing_ok=True)


def _drawn(train: TrainParams, trainer: Any, data: _TrainingData, main_process: bool) -> Tally | None:
    """What the steps trained on, per category, from the sampler's order (which depends on the seed and the epoch alone)."""
    if data.segments is None or not main_process:
        return None
    from bayling.train.batches import drawn_rows

    order = trainer._get_train_sampler().order
    rows = drawn_rows(order, len(data.dataset), train.per_device_batch_size, train.gradient_accumulation_steps,
                      train.world_size(), int(trainer.state.global_step))
    return drawn_tally(data.segments, rows)


def _metrics(train: TrainParams, trainer: Any, result: Any, runtime: float, history: list[dict[str, float]], dataset: Any,
             resume_from: Path | None) -> dict[str, Any]:
    from bayling.train.throughput import trainable_tokens

    tokens_seen = int(trainer.state.num_input_tokens_seen or 0)
    return {
        "train_loss": round(float(result.training_loss), 6),
        "final_loss": next((h["loss"] for h in reversed(history) if "loss" in h), None),
        "steps": int(trainer.state.global_step),
        "runtime_s": round(runtime, 2),
        "tokens_seen": tokens_seen,
        "tokens_per_s": round(tokens_seen / runtime, 2) if runtime else None,
        "mfu": next((round(h["mfu"], 6) for h in reversed(history) if "mfu" in h), None),
        "supervised_tokens_in_dataset": trainable_tokens(dataset),
        "resumed_from_step": int(resume_from.name.split("-")[1]) if resume_from else 0,
        "world_size": train.world_size(),
    }


def train_model(train: TrainParams, base_model: BaseModelParams, root: Path, paths: TrainPaths,
                logger: ResilientLogger) -> TrainResult:
    """Fine-tune base_model.path on the tokenized data; on the main process write paths.final.

    Checkpoints count only once their COMPLETE marker is written; a re-run resumes from the newest
    complete checkpoint of the same configuration (settings, data fingerprint, base model, code).
    """
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if train.torch_threads:
        torch.set_num_threads(train.torch_threads)
    from bayling.train import launch

    main_process = launch.is_main_process()
    model_dir = root / base_model.path
    data = _load_training_data(base_model, model_dir, paths, logger)
    train = _in_steps(train, len(data.dataset), logger)
    model, generation = _seeded_model(train, model_dir, data)
    expected, resume_from = _resume_point(train, base_model, root, paths, data.stored["fingerprint"], main_process, logger)
    trainer, step_logger = _trainer(train, model, data, root, paths, expected, logger)
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    runtime = time.perf_counter() - started
    _export(train, trainer, model_dir, data.tokenizer, generation, paths, main_process)
    drawn = _drawn(train, trainer, data, main_process)
    history = step_logger.history
    metrics = _metrics(train, trainer, result, runtime, history, data.dataset, resume_from)
    if main_process and not train.keep_checkpoints:
        shutil.rmtree(paths.checkpoints, ignore_errors=True)
        paths.checkpoints.mkdir(parents=True, exist_ok=True)  # DVC expects the out to exist
    return TrainResult(metrics, history, main_process, drawn)
