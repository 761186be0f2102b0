"""One training step of the train stage's trainer, on one process or under torchrun with DeepSpeed, that
saves the step's loss and every trainable parameter's full gradient (rank 0 writes {out}/{method}.pt).

    python tests/integration/distributed_step.py --model DIR --data DIR --out DIR --zero none --batch 8
    torchrun --nproc_per_node 2 tests/integration/distributed_step.py ... --zero zero3 --batch 4 --method full lora

Several methods run one after the other in the same processes: one launch (and one DeepSpeed start) serves
all of them.

Gradients are read just before the optimizer step: under DeepSpeed through `safe_get_full_grad` (a
collective, so every rank calls it), otherwise from `.grad`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder for {method}.pt")
    parser.add_argument("--zero", choices=["none", "zero2", "zero3"], required=True)
    parser.add_argument("--batch", type=int, required=True, help="rows per device")
    parser.add_argument("--method", choices=["full", "lora"], nargs="+", default=["full"])
    args = parser.parse_args()
    for method in args.method:
        one_step(args, method)
    import torch

    if torch.distributed.is_initialized():
        # torch's documented teardown, rather than leaving gloo's threads to interpreter shutdown: one run of the suite
        # saw rank 0 abort ("terminate called without an active exception", exit -6) after the step; not reproduced since
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def one_step(args: argparse.Namespace, method: str) -> None:
    import torch
    from datasets import load_from_disk
    from transformers import AutoTokenizer, TrainerCallback, set_seed

    from bayling.config.train import TrainParams
    from bayling.train.batches import PackedCollator
    from bayling.train.trainer import build_model, supervised_trainer_class, training_arguments, unwrapped

    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    params = TrainParams(method=method, max_steps=1, per_device_batch_size=args.batch, learning_rate=1e-3, warmup_ratio=0.0,
                         logging_steps=1, save_steps=100, max_grad_norm=0.0, deepspeed=None if args.zero == "none" else args.zero,
                         lora={"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"}, seed=3,
                         precision="fp32")  # the comparison is of sharding, in one precision on both sides
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    set_seed(params.seed)
    model = build_model(params, args.model, tokenizer)
    dataset = load_from_disk(str(args.data))
    arguments = training_arguments(params, args.out / f"ckpt-{args.zero}-{method}", ROOT, packed=True)
    captured: dict = {}
    trainer_box: list = []

    def trainable():
        return [(name, p) for name, p in unwrapped(trainer_box[0].model).named_parameters() if p.requires_grad]

    class Capture(TrainerCallback):
        def on_train_begin(self, args_, state, control, **kwargs):
            engine = trainer_box[0].model_wrapped
            if hasattr(engine, "zero_optimization_stage"):
                from deepspeed.utils import safe_get_full_grad

                original = engine.step

                def step(*a, **k):
                    captured["grads"] = {name: safe_get_full_grad(p).detach().clone() for name, p in trainable()}
                    return original(*a, **k)

                engine.step = step

        def on_pre_optimizer_step(self, args_, state, control, **kwargs):
            if "grads" not in captured:
                captured["grads"] = {name: p.grad.detach().clone() for name, p in trainable()}

        def on_log(self, args_, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                captured["loss"] = float(logs["loss"])

    trainer = supervised_trainer_class()(model=model, args=arguments, train_dataset=dataset, processing_class=tokenizer,
                                         data_collator=PackedCollator(tokenizer.pad_token_id), callbacks=[Capture()])
    trainer_box.append(trainer)
    trainer.train()
    if int(os.environ.get("RANK", "0")) == 0:
        args.out.mkdir(parents=True, exist_ok=True)
        torch.save({"loss": captured["loss"], "grads": {k: v.float() for k, v in captured["grads"].items()}}, args.out / f"{method}.pt")


if __name__ == "__main__":
    main()
