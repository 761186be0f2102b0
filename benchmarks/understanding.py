"""Understanding-task speed, in one run: XCOPA through the native engine (bayling/evaluate/xcopa.py) and through
lm-evaluation-harness itself (lm_eval_tasks/xcopa, HFLM), on the same model and documents, with the compute bound
this machine allows beside them.

    python benchmarks/understanding.py [--model models/base] [--languages sw zh] [--items 100] [--batch-size 32]
                                       [--belebele-languages 122] [--belebele-items 900]

Model: the embedded SmolLM2-135M-Instruct (models/base when the base_model stage has run, otherwise dequantized
from the GGUF it comes from), fp32. Data: ../shared/data/mc/xcopa/data (test split, the first --items per language).

Both engines score the same (context, choice) pairs; lm-eval's time is counted three ways: its first call
(simple_evaluate with the task index built), a later call (dataset build, requests, scoring), and its
log-likelihood requests alone, on the same requests as the native engine, so the ratios separate the engine's
overhead from its arithmetic. Native and lm-eval runs alternate --repeats times and the best of each counts. The outcomes
of every document must be equal between the engines. The bound: one forward pass costs about 2 x parameters FLOPs a
token, at the machine's measured fp32 matmul peak (benchmarks/machine.py).

Then, on paper, Belebele (900 questions per language variant): the paper profile's four variants and all 122, for
this model on this machine, for a 7B model (the paper profile's) on this machine, and in H100 GPU-hours at its
datasheet bf16 peak, each at the efficiency against peak that lm-eval's requests reached here (a GPU at the same
share of its peak is an assumption, stated as one). A document's tokens: --belebele-sentences FLORES-200 sentences
(Belebele's passages are FLORES paragraphs; their mean length measured here with this model's tokenizer on the
shipped FLORES sample) plus --belebele-extra-tokens for the question and answers.

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


FLORES_ARCHIVE = ROOT / "data" / "sample" / "flores200" / "flores200-devtest.tar.gz"
H100_BF16_DENSE_FLOPS = 989e12  # NVIDIA's H100 SXM datasheet, dense bf16 tensor core peak


def flores_sentence_tokens(tokenizer, codes: list[str], lines: int = 200) -> float:  # type: ignore[no-untyped-def]
    """Mean tokens of a FLORES-200 devtest sentence over `codes`: Belebele's passages are FLORES-200 paragraphs."""
    import tarfile

    counts = []
    with tarfile.open(FLORES_ARCHIVE) as archive:
        for code in codes:
            member = archive.extractfile(f"devtest/{code}.devtest")
            assert member is not None
            text = member.read().decode("utf-8").splitlines()[:lines]
            counts.extend(len(tokenizer.encode(line, add_special_tokens=False)) for line in text)
    return sum(counts) / len(counts)


def belebele_on_paper(args, tokenizer, parameters: int, peak: float, efficiency: float) -> dict:  # type: ignore[no-untyped-def]
    """What lm-eval's belebele costs, from this run's measured efficiency: each document is one passage, a question and
    four answers, scored by four one-token continuations (A-D) that lm-eval computes in one forward pass (its
    logits cache groups requests whose inputs match). FLOPs: 2 x parameters a token."""
    per_sentence = flores_sentence_tokens(tokenizer, ["eng_Latn", "zho_Hans", "swh_Latn", "fra_Latn"])
    tokens = round(per_sentence * args.belebele_sentences + args.belebele_extra_tokens)

    def cost(documents: int) -> dict[str, float]:
        work = documents * tokens * 2
        return {"this_model_this_machine_h": round(work * parameters / (peak * efficiency) / 3600, 1),
                "paper_model_this_machine_h": round(work * args.paper_parameters / (peak * efficiency) / 3600, 1),
                "paper_model_gpu_h": round(work * args.paper_parameters / (H100_BF16_DENSE_FLOPS * efficiency) / 3600, 2)}

    profile, every = 4 * args.belebele_items, args.belebele_languages * args.belebele_items
    return {"tokens_per_sentence": round(per_sentence, 1), "tokens_per_document": tokens, "efficiency_vs_peak": round(efficiency, 3),
            "profile_documents": profile, "all_documents": every, "profile": cost(profile), "all": cost(every)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "base")
    parser.add_argument("--languages", nargs="+", default=["sw", "zh"])
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--belebele-languages", type=int, default=122)
    parser.add_argument("--belebele-items", type=int, default=900)
    parser.add_argument("--belebele-sentences", type=float, default=5.0, help="FLORES sentences in a passage (assumed)")
    parser.add_argument("--belebele-extra-tokens", type=int, default=80, help="the question, four answers, the labels")
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
    lm = local_lm(model, tokenizer, args.batch_size)
    spec = params.understanding[0]
    started = time.perf_counter()
    harness = run_tasks(spec, lm, "final", ROOT)  # the first call also builds lm-eval's task index
    harness_first_s = time.perf_counter() - started
    instances = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]
    times: dict[str, list[float]] = {"native": [], "lm_eval": [], "requests": []}
    for _ in range(args.repeats):  # alternated, best of each: this shared machine's speed drifts within a run
        started = time.perf_counter()
        native = evaluate_sets(params.choice_sets(), model, tokenizer, "final", Path, args.batch_size)
        times["native"].append(time.perf_counter() - started)
        started = time.perf_counter()
        harness = run_tasks(spec, lm, "final", ROOT)
        times["lm_eval"].append(time.perf_counter() - started)
        started = time.perf_counter()
        lm.loglikelihood(instances, disable_tqdm=True)
        times["requests"].append(time.perf_counter() - started)
    native_s, harness_s, requests_s = (min(times[k]) for k in ("native", "lm_eval", "requests"))

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
    figures["belebele"] = belebele_on_paper(args, tokenizer, parameters, peak, bound_s / requests_s)
    print(f"{n} XCOPA documents ({len(pairs)} requests, {tokens} tokens), {parameters / 1e6:.0f}M parameters, fp32")
    print(f"  native:  {figures['native_items_per_s']} items/s ({native_s:.1f} s)")
    print(f"  lm-eval: {figures['lm_eval_items_per_s']} items/s ({harness_s:.1f} s; first call {harness_first_s:.1f} s, "
          f"its requests alone {requests_s:.1f} s)")
    print(f"  native is {figures['ratio_native_vs_lm_eval']}x lm-eval's whole call, {figures['ratio_native_vs_lm_eval_requests']}x its "
          f"requests; {figures['native_vs_compute_bound']:.1%} of the fp32 compute bound; outcomes equal: {equal}")
    b = figures["belebele"]
    print(f"  Belebele on paper ({b['tokens_per_document']} tokens a document, one forward pass each, at "
          f"{b['efficiency_vs_peak']:.0%} of peak): the profile's {b['profile_documents']} documents take "
          f"{b['profile']['this_model_this_machine_h']} h for this model here, {b['profile']['paper_model_this_machine_h']} h "
          f"for a {args.paper_parameters / 1e9:.0f}B model here, {b['profile']['paper_model_gpu_h']} GPU-hours on an H100; "
          f"all {b['all_documents']}: {b['all']['paper_model_gpu_h']} GPU-hours")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
