"""Stage 4, train: supervised fine-tuning of the base model on data/tokenized with the Hugging Face Trainer.

    python -m stages.train

Reads data/tokenized and base_model.path. Writes models/checkpoints/ (Trainer checkpoints),
models/final/ (a standard HF model directory with tokenizer and chat template), and
reports/train/{metrics.json, loss.csv, run.json}. Logs params and per-step metrics to MLflow;
a tracking outage is reported but never stops training.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import time

from bayling.errors import PipelineError
from bayling.params import BaseModelParams, TrackingParams, TrainParams, flatten
from stages._common import ROOT, read_json, run_stage, write_json

log = logging.getLogger("train")
TOKENIZED = ROOT / "data" / "tokenized"
CHECKPOINTS = ROOT / "models" / "checkpoints"
FINAL = ROOT / "models" / "final"
REPORTS = ROOT / "reports" / "train"


def main(train: TrainParams, base_model: BaseModelParams, tracking: TrackingParams) -> None:
    # Fail fast on an unreachable tracking server instead of MLflow's multi-minute default retry budget.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    import torch

    if train.torch_threads:
        torch.set_num_threads(train.torch_threads)
    from datasets import load_from_disk
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer

    from bayling.lineage import tokenizer_fingerprint, tokenizer_only_fingerprint
    from bayling.templates import end_of_turn_ids
    from bayling.tracking import ResilientLogger, optional_stage_run
    from bayling.training import PackedCollator, PaddingCollator, make_step_logger, trainable_tokens, training_arguments

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
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        log.info("resizing embeddings for %d tokens the chat template added", len(tokenizer) - model.get_input_embeddings().weight.shape[0])
        model.resize_token_embeddings(len(tokenizer))
    model.config.use_cache = False  # no KV cache while training (and none to hide the packed-sequence mask)
    end_of_turn = stored["settings"].get("end_of_turn") or tokenizer.eos_token
    model.generation_config.eos_token_id = end_of_turn_ids(tokenizer, end_of_turn)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    logger = ResilientLogger()
    step_logger = make_step_logger(logger)
    run_id = None
    with optional_stage_run(ROOT, "train", tracking.experiment) as run:
        if run is not None:
            run_id = run.info.run_id
            logger.log_params({f"train.{k}": v for k, v in flatten(train).items()})
            logger.log_params({f"base_model.{k}": v for k, v in flatten(base_model).items()})
            logger.log_params({"data.train_sequences": len(dataset), "data.fingerprint": stored["fingerprint"]})
        for leftover in (CHECKPOINTS, FINAL):
            if leftover.exists():
                shutil.rmtree(leftover)
        trainer = Trainer(
            model=model,
            args=training_arguments(train, CHECKPOINTS),
            train_dataset=dataset,
            data_collator=(PackedCollator if packed else PaddingCollator)(tokenizer.pad_token_id),
            processing_class=tokenizer,
            callbacks=[step_logger],
        )
        started = time.perf_counter()
        result = trainer.train()
        runtime = time.perf_counter() - started
        model.config.use_cache = True
        trainer.save_model(str(FINAL))
        tokens_seen = int(trainer.state.num_input_tokens_seen or 0)
        metrics = {
            "train_loss": round(float(result.training_loss), 6),
            "final_loss": next((h["loss"] for h in reversed(step_logger.history) if "loss" in h), None),
            "steps": int(trainer.state.global_step),
            "runtime_s": round(runtime, 2),
            "tokens_seen": tokens_seen,
            "tokens_per_s": round(tokens_seen / runtime, 2) if runtime else None,
            "supervised_tokens_in_dataset": trainable_tokens(dataset),
            "tracking_failures": logger.failures,
        }
        logger.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
    if logger.failures:
        log.warning("MLflow: %s; the training run itself completed", logger.summary())
    write_json(REPORTS / "metrics.json", metrics)
    write_json(REPORTS / "run.json", {"run_id": run_id, "tracking_failures": logger.failures})
    REPORTS.mkdir(parents=True, exist_ok=True)
    with open(REPORTS / "loss.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["step", "loss", "learning_rate", "grad_norm"])
        writer.writeheader()
        for entry in step_logger.history:
            if "loss" in entry:
                writer.writerow({k: entry.get(k) for k in writer.fieldnames})
    log.info("trained %d steps in %.1fs: loss %.4f, %.0f tokens/s", metrics["steps"], runtime, metrics["train_loss"], metrics["tokens_per_s"] or 0)
    log.info("wrote models/final (%s)", json.dumps({"run_id": run_id}))


if __name__ == "__main__":
    run_stage("train", ["train", "base_model", "tracking"], main)
