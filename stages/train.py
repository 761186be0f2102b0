"""Stage 4, train: fine-tune the base model on data/tokenized (full or LoRA), on one process or many.

    python -m stages.train

With train.num_gpus x train.num_nodes > 1 the stage re-executes itself under torchrun (or the
deepspeed launcher); without a GPU the processes train on CPU with gloo. train.deepspeed picks
infra/deepspeed/{zero2,zero3,zero3_offload}.json. Checkpoints go to models/checkpoints/ and count
only once their COMPLETE marker is written; a re-run resumes from the newest complete checkpoint of
the same configuration. Writes models/final/ (a standard HF model with tokenizer and chat template;
LoRA adapters merged) and reports/train/{metrics.json, loss.csv, run.json}. Only rank 0 logs to
MLflow; a tracking outage is reported but never stops training.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import shutil
import sys
import time

from bayling.errors import PipelineError
from bayling.params import BaseModelParams, TrackingParams, TrainParams, flatten
from stages._common import ROOT, read_json, run_stage, write_json

log = logging.getLogger("train")
TOKENIZED = ROOT / "data" / "tokenized"
CHECKPOINTS = ROOT / "models" / "checkpoints"
FINAL = ROOT / "models" / "final"
REPORTS = ROOT / "reports" / "train"
# Settings that change what training computes; logging and checkpoint cadence don't invalidate a checkpoint.
NOT_IN_CHECKPOINT_HASH = {"logging_steps", "save_steps", "save_total_limit", "keep_checkpoints", "resume", "torch_threads",
                          "log_system_metrics", "peak_tflops"}


def main(train: TrainParams, base_model: BaseModelParams, tracking: TrackingParams) -> None:
    from bayling import launch

    if train.world_size() > 1 and not launch.already_launched(os.environ):
        command = launch.launch_command(train, os.environ, sys.executable)
        log.info("launching %d processes: %s", train.world_size(), " ".join(command))
        env = dict(os.environ, BAYLING_LAUNCHED="1")
        env.setdefault("TORCH_EXTENSIONS_DIR", str(ROOT / ".cache" / "torch_extensions"))
        os.execvpe(command[0], command, env)
    run(train, base_model, tracking)


def run(train: TrainParams, base_model: BaseModelParams, tracking: TrackingParams) -> None:
    # Fail fast on an unreachable tracking server instead of MLflow's multi-minute default retry budget.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if train.torch_threads:
        torch.set_num_threads(train.torch_threads)
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    from bayling import checkpoints, launch
    from bayling.lineage import sha256_bytes, tokenizer_fingerprint, tokenizer_only_fingerprint
    from bayling.templates import end_of_turn_ids
    from bayling.tracking import ResilientLogger, optional_stage_run
    from bayling.training import (
        PackedCollator,
        PaddingCollator,
        build_model,
        export_model,
        flops_per_token,
        make_checkpoint_marker,
        make_step_logger,
        peak_flops,
        supervised_trainer_class,
        trainable_tokens,
        training_arguments,
        unwrapped,
    )

    main_process = launch.is_main_process()
    model_dir = ROOT / base_model.path
    stored = read_json(TOKENIZED / "fingerprint.json", "data/tokenized")
    tokenizer = AutoTokenizer.from_pretrained(TOKENIZED / "tokenizer")
    current = tokenizer_fingerprint(model_dir, tokenizer.chat_template or "", stored["max_seq_len"])
    if tokenizer_only_fingerprint(current) != tokenizer_only_fingerprint(stored):
        raise PipelineError(
            f"data/tokenized was made with a different tokenizer or chat template than {base_model.path}; "
            "re-run `python -m stages.tokenize` (or `dvc repro`)"
        )
    dataset = load_from_disk(str(TOKENIZED))["train"]
    packed = "position_ids" in dataset.column_names
    model = build_model(train, model_dir, tokenizer)
    end_of_turn = stored["settings"].get("end_of_turn") or tokenizer.eos_token
    generation = unwrapped(model).generation_config
    generation.eos_token_id = end_of_turn_ids(tokenizer, end_of_turn)
    generation.pad_token_id = tokenizer.pad_token_id

    settings = {k: v for k, v in train.model_dump(mode="json").items() if k not in NOT_IN_CHECKPOINT_HASH}
    code = {name: sha256_bytes((ROOT / name).read_bytes()) for name in ("stages/train.py", "bayling/training.py")}
    expected = checkpoints.config_hash({"train": settings, "data": stored["fingerprint"], "base": str(base_model.path), "code": code})
    resume_from = checkpoints.newest_complete(CHECKPOINTS, expected, before_step=train.max_steps) if train.resume else None
    if main_process:
        for stale in checkpoints.prune(CHECKPOINTS, expected) if train.resume else []:
            log.info("removed %s (incomplete, or from another configuration)", stale.name)
        if not train.resume and CHECKPOINTS.exists():
            shutil.rmtree(CHECKPOINTS)
        if FINAL.exists():
            shutil.rmtree(FINAL)
    if resume_from:
        log.info("resuming from %s", resume_from.relative_to(ROOT))

    logger = ResilientLogger()
    flops = flops_per_token(model, stored["max_seq_len"], lora=train.method == "lora")
    step_logger = make_step_logger(logger, flops, peak_flops(train.peak_tflops), train.world_size())
    run_id = None
    tracked = (optional_stage_run(ROOT, "train", tracking.experiment, log_system_metrics=train.log_system_metrics)
               if main_process else contextlib.nullcontext())
    with tracked as mlflow_run:
        if mlflow_run is not None:
            run_id = mlflow_run.info.run_id
            logger.log_params({f"train.{k}": v for k, v in flatten(train).items()})
            logger.log_params({f"base_model.{k}": v for k, v in flatten(base_model).items()})
            logger.log_params({"data.train_rows": len(dataset), "data.fingerprint": stored["fingerprint"],
                               "data.packed": packed, "resumed_from": str(resume_from)})
        trainer = supervised_trainer_class()(
            model=model,
            args=training_arguments(train, CHECKPOINTS),
            train_dataset=dataset,
            data_collator=(PackedCollator if packed else PaddingCollator)(tokenizer.pad_token_id),
            processing_class=tokenizer,
            callbacks=[step_logger, make_checkpoint_marker(expected)],
        )
        started = time.perf_counter()
        result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        runtime = time.perf_counter() - started
        final = export_model(trainer.model, train.method)
        final.config.use_cache = True
        if train.method == "lora":
            if main_process:
                final.save_pretrained(FINAL, safe_serialization=True)
                tokenizer.save_pretrained(FINAL)
        else:
            trainer.save_model(str(FINAL))
        tokens_seen = int(trainer.state.num_input_tokens_seen or 0)
        metrics = {
            "train_loss": round(float(result.training_loss), 6),
            "final_loss": next((h["loss"] for h in reversed(step_logger.history) if "loss" in h), None),
            "steps": int(trainer.state.global_step),
            "runtime_s": round(runtime, 2),
            "tokens_seen": tokens_seen,
            "tokens_per_s": round(tokens_seen / runtime, 2) if runtime else None,
            "mfu": next((round(h["mfu"], 6) for h in reversed(step_logger.history) if "mfu" in h), None),
            "supervised_tokens_in_dataset": trainable_tokens(dataset),
            "resumed_from_step": int(resume_from.name.split("-")[1]) if resume_from else 0,
            "world_size": train.world_size(),
            "tracking_failures": logger.failures,
        }
        logger.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
    if not main_process:
        return
    if logger.failures:
        log.warning("MLflow: %s; the training run itself completed", logger.summary())
    write_json(REPORTS / "metrics.json", metrics)
    write_json(REPORTS / "run.json", {"run_id": run_id, "tracking_failures": logger.failures})
    with open(REPORTS / "loss.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["step", "loss", "learning_rate", "grad_norm", "tokens_per_s"])
        writer.writeheader()
        for entry in step_logger.history:
            if "loss" in entry:
                writer.writerow({k: entry.get(k) for k in writer.fieldnames})
    if not train.keep_checkpoints:
        shutil.rmtree(CHECKPOINTS, ignore_errors=True)
        CHECKPOINTS.mkdir(parents=True, exist_ok=True)  # DVC expects the out to exist
    log.info("trained %d steps in %.1fs: loss %.4f, %.0f tokens/s%s", metrics["steps"], runtime, metrics["train_loss"],
             metrics["tokens_per_s"] or 0, f", resumed from step {metrics['resumed_from_step']}" if resume_from else "")


if __name__ == "__main__":
    run_stage("train", ["train", "base_model", "tracking"], main)
