"""Stage 4, train: fine-tune the base model on data/tokenized (full or LoRA), on one process or many.

    python -m stages.train            # train
    python -m stages.train --plan     # print the capacity plan (memory per GPU, tokens, FLOPs, time) and exit

Reads data/tokenized/ and base_model.path. With train.num_gpus x train.num_nodes > 1 the stage
re-executes itself under torchrun (or the deepspeed launcher); without a GPU the processes train on
CPU with gloo. train.deepspeed picks <train.deepspeed_dir>/{zero2,zero3,zero3_offload}.json.
Checkpoints go to models/checkpoints/ and count only once their COMPLETE marker is written; a re-run
resumes from the newest complete checkpoint of the same configuration. Writes models/final/ (a
standard HF model with tokenizer and chat template; LoRA adapters merged) and
reports/train/{metrics.json, loss.csv, run.json, drawn.json} (drawn.json: conversations and supervised
tokens per mix cell, task family and reply language in the rows the steps trained on). Only rank 0 logs to MLflow; a tracking outage is
reported but never stops training. With train.plan.gpu_memory_gib set, the plan runs first and a
configuration that cannot fit is refused with the smallest change that would (bayling/train/plan.py).
"""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import sys

from bayling.config.base_model import BaseModelParams
from bayling.config.tokenize import TokenizeParams
from bayling.config.tracking import TrackingParams
from bayling.config.train import TrainParams
from stages._common import project_root, run_stage, write_json

ROOT = project_root()  # read each time the stage runs (see stages/_common.py)

log = logging.getLogger("train")
REPORTS = ROOT / "reports" / "train"
LOSS_COLUMNS = ["step", "loss", "learning_rate", "grad_norm", "tokens_per_s"]


def plan_only(train: TrainParams, base_model: BaseModelParams, tokenize: TokenizeParams, tracking: TrackingParams) -> None:
    from bayling.train.plan import plan_for

    plan = plan_for(train, base_model, tokenize.max_seq_len, ROOT, advise=True)
    print(plan.describe(), flush=True)
    if plan.fits is False:
        plan_for(train, base_model, tokenize.max_seq_len, ROOT, check=True)  # says which smallest change would fit


def main(train: TrainParams, base_model: BaseModelParams, tokenize: TokenizeParams, tracking: TrackingParams) -> None:
    from bayling.config.loader import flatten
    from bayling.core.tracking import ResilientLogger, fail_fast, optional_stage_run
    from bayling.train import launch
    from bayling.train.run import TrainPaths, train_model

    if train.plan.gpu_memory_gib and not launch.already_launched(os.environ):
        from bayling.train.plan import plan_for

        plan = plan_for(train, base_model, tokenize.max_seq_len, ROOT, check=True)
        log.info("plan: %.1f GiB per GPU of %.0f GiB declared, %s tokens per step", plan.total_gib, train.plan.gpu_memory_gib,
                 f"{plan.tokens_per_step:,}")
    if train.world_size() > 1 and not launch.already_launched(os.environ):
        command = launch.launch_command(train, os.environ, sys.executable)
        log.info("launching %d processes: %s", train.world_size(), " ".join(command))
        env = dict(os.environ, BAYLING_LAUNCHED="1")
        env.setdefault("TORCH_EXTENSIONS_DIR", str(ROOT / ".cache" / "torch_extensions"))
        os.execvpe(command[0], command, env)
    fail_fast()
    main_process = launch.is_main_process()
    tracked = (optional_stage_run(ROOT, "train", tracking.experiment, log_system_metrics=train.log_system_metrics)
               if main_process else contextlib.nullcontext())
    with tracked as mlflow_run:
        logger = ResilientLogger(active=mlflow_run is not None)
        logger.log_params({f"train.{k}": v for k, v in flatten(train).items()})
        logger.log_params({f"base_model.{k}": v for k, v in flatten(base_model).items()})
        result = train_model(train, base_model, ROOT, TrainPaths.under(ROOT), logger)
        metrics = {**result.metrics, "tracking_failures": logger.failures}
        logger.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
    if not result.main_process:
        return
    if logger.failures:
        log.warning("MLflow: %s; the training run itself completed", logger.summary())
    write_json(REPORTS / "metrics.json", metrics)
    write_json(REPORTS / "run.json", {"run_id": mlflow_run.info.run_id if mlflow_run else None, "tracking_failures": logger.failures})
    with open(REPORTS / "loss.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOSS_COLUMNS)
        writer.writeheader()
        writer.writerows({k: entry.get(k) for k in LOSS_COLUMNS} for entry in result.history if "loss" in entry)
    log.info("trained %d steps in %.1fs: loss %.4f, %.0f tokens/s%s", metrics["steps"], metrics["runtime_s"], metrics["train_loss"],
             metrics["tokens_per_s"] or 0, f", resumed from step {metrics['resumed_from_step']}" if metrics["resumed_from_step"] else "")
    write_json(REPORTS / "drawn.json", {"steps": metrics["steps"], "drawn": result.drawn.as_json() if result.drawn else None})
    if result.drawn:
        log.info("the steps drew supervised tokens: %s", ", ".join(
            f"{cell} {100 * share:.1f}%" for cell, share in result.drawn.shares("cell", "supervised_tokens").items()))


if __name__ == "__main__":
    run_stage("train", ["train", "base_model", "tokenize", "tracking"], plan_only if "--plan" in sys.argv[1:] else main)
