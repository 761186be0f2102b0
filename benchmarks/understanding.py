"""Understanding-task speed, in one run: XCOPA through the native engine (bayling/evaluate/xcopa.py) and through
lm-evaluation-harness itself (lm_eval_tasks/xcopa, HFLM), on the same model and documents, with the compute bound
this machine allows beside them.

    python benchmarks/understanding.py [--model models/base] [--languages sw zh] [--items 100] [--batch-size 32]
                                       [--belebele-languages 122] [--belebele-items 900]

Model: the embedded SmolLM2-135M-Instruct (models/base when the base_model stage has run, otherwise dequantized
from the GGUF it comes from), fp32. Data: ../shared/data/mc/xcopa/data (test split, the first --items per language).

Both engines score the same (context, choice) pairs; lm-eval's time is counted twice: its whole call
(simple_evaluate: task index, dataset build, requests, scoring) and its log-likelihood requests alone, on the
same requests as the native engine, so the ratio separates the engine's overhead from its arithmetic. The outcomes
of every document must be equal between the engines. The bound: one forward pass costs about 2 x parameters FLOPs a
token, at the machine's measured fp32 matmul peak (benchmarks/machine.py).

Then, on paper, a full Belebele run at the paper profile's scale (122 language variants x 900 questions x 4
choices, one log-likelihood request per choice) from the measured requests per second and tokens per request,
scaled to a 7B model by its parameter count (2 x 7e9 FLOPs a token) at the same efficiency against the peak.

The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

XCOPA = ROOT.parent / "shared" / "data" / "mc" / "xcopa" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "base")
    parser.add_argument("--languages", nargs="+", default=["sw", "zh"])
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--belebele-languages", type=int, default=122)
    parser.add_argument("--belebele-items", type=int, default=900)
    parser.add_argument("--paper-parameters", type=float, default=7e9)
    args = parser.parse_args()

    import torch
    from generate import load
    from lm_eval.api.instance import Instance
    from machine import matmul_flops

    from bayling.config.evaluate import EvaluateParams
    from bayling.evaluate.understanding import local_lm, run_tasks
    from bayling.evaluate.xcopa import encode_pair, evaluate_sets, read_xcopa

    model, tokenizer = load(args.model)
    model.eval()
    parameters = sum(p.numel() for p in model.parameters())
    peak = matmul_flops("float32")
    langs = args.languages
    params = EvaluateParams(
        xcopa={"dir": str(XCOPA), "languages": langs, "max_items": args.items},
        understanding=[{"name": "xcopa_lm", "tasks": {lang: f"xcopa_{lang}" for lang in langs}, "include_path": "lm_eval_tasks/xcopa",
                        "data_dir": str(XCOPA), "limit": args.items, "batch_size": args.batch_size}])
    items = [item for lang in langs for item in read_xcopa(XCOPA / lang / f"test.{lang}.jsonl", lang, args.items)]
    pairs = [pair for item in items for pair in item.requests()]
    tokens = sum(len(c) + len(x) for c, x in (encode_pair(tokenizer, *pair) for pair in pairs))

    torch.manual_seed(0)
    evaluate_sets(params.choice_sets(), model, tokenizer, "warmup", Path, args.batch_size)  # first-call costs out of the way
    started = time.perf_counter()
    native = evaluate_sets(params.choice_sets(), model, tokenizer, "final", Path, args.batch_size)
    native_s = time.perf_counter() - started

    lm = local_lm(model, tokenizer, args.batch_size)
    spec = params.understanding[0]
    started = time.perf_counter()
    harness = run_tasks(spec, lm, "final", ROOT)  # the first call builds lm-eval's task index
    harness_first_s = time.perf_counter() - started
    started = time.perf_counter()
    harness = run_tasks(spec, lm, "final", ROOT)
    harness_s = time.perf_counter() - started
    started = time.perf_counter()
    lm.loglikelihood([Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)], disable_tqdm=True)
    requests_s = time.perf_counter() - started

    equal = all(native.outcomes["xcopa"][lang] == harness.outcomes["xcopa_lm"][lang] for lang in langs)
    n = len(items)
    bound_s = 2 * parameters * tokens / peak
    figures = {
        "model_parameters": parameters, "documents": n, "requests": len(pairs), "tokens": tokens,
        "native_items_per_s": round(n / native_s, 2),
        "lm_eval_items_per_s": round(n / harness_s, 2),
        "lm_eval_first_call_items_per_s": round(n / harness_first_s, 2),
        "lm_eval_requests_items_per_s": round(n / requests_s, 2),
        "ratio_native_vs_lm_eval": round(harness_s / native_s, 2),
        "ratio_native_vs_lm_eval_requests": round(requests_s / native_s, 2),
        "native_vs_compute_bound": round(bound_s / native_s, 3),
        "peak_fp32_flops": round(peak), "outcomes_equal": equal,
    }
    # on paper: Belebele at the paper profile's scale, one request per choice, tokens per request as measured here
    requests = args.belebele_languages * args.belebele_items * 4
    per_request_s = requests_s / len(pairs)
    efficiency = bound_s / requests_s  # of the fp32 peak, as lm-eval's requests reached it here
    belebele_tokens_per_request = 500  # a FLORES passage (about 400 tokens), its question and one answer
    figures["belebele"] = {
        "requests": requests,
        "this_model_hours_xcopa_length": round(requests * per_request_s / 3600, 2),
        "this_model_hours": round(requests * belebele_tokens_per_request * 2 * parameters / (peak * efficiency) / 3600, 2),
        "paper_model_hours_per_this_machine": round(
            requests * belebele_tokens_per_request * 2 * args.paper_parameters / (peak * efficiency) / 3600, 1),
        "tokens_per_request_assumed": belebele_tokens_per_request, "efficiency_vs_peak": round(efficiency, 3),
    }
    print(f"{n} XCOPA documents ({len(pairs)} requests, {tokens} tokens), {parameters / 1e6:.0f}M parameters, fp32")
    print(f"  native:  {figures['native_items_per_s']} items/s ({native_s:.1f} s)")
    print(f"  lm-eval: {figures['lm_eval_items_per_s']} items/s ({harness_s:.1f} s; first call {harness_first_s:.1f} s, "
          f"its requests alone {requests_s:.1f} s)")
    print(f"  native is {figures['ratio_native_vs_lm_eval']}x lm-eval's whole call, {figures['ratio_native_vs_lm_eval_requests']}x its "
          f"requests; {figures['native_vs_compute_bound']:.1%} of the fp32 compute bound; outcomes equal: {equal}")
    b = figures["belebele"]
    print(f"  Belebele, {args.belebele_languages} variants x {args.belebele_items} x 4 = {requests} requests of ~"
          f"{belebele_tokens_per_request} tokens: {b['this_model_hours']} h for this model, "
          f"{b['paper_model_hours_per_this_machine']} h for a {args.paper_parameters / 1e9:.0f}B model on this machine")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
