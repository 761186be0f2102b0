"""Stage 5, evaluate: translate the held-out pairs with the fine-tuned and the base model, and score them.

    python -m stages.evaluate

Reads data/synth/heldout.jsonl, models/final and base_model.path. Generation is batched with left
padding, greedy (or beam search with evaluate.num_beams). Scores per direction with sacreBLEU:
BLEU with the target language's tokenizer, chrF2 and chrF2++, with their signatures.
Writes reports/eval/metrics.json, reports/eval/per_language.csv, reports/eval/predictions/ and
reports/eval/run.json (MLflow run id, timings).
"""

from __future__ import annotations

import csv
import gc
import json
import logging
import shutil
import time

from bayling.errors import PipelineError
from bayling.params import BaseModelParams, EvaluateParams, TrackingParams
from stages._common import ROOT, run_stage, write_json

log = logging.getLogger("evaluate")
HELDOUT = ROOT / "data" / "synth" / "heldout.jsonl"
FINAL = ROOT / "models" / "final"
OUT = ROOT / "reports" / "eval"


def main(evaluate: EvaluateParams, base_model: BaseModelParams, tracking: TrackingParams) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bayling.evaluation import compare, per_language_rows, test_items
    from bayling.generation import clean_output, generate
    from bayling.metrics import score_corpus
    from bayling.tracking import ResilientLogger, optional_stage_run

    if not HELDOUT.exists():
        raise PipelineError("data/synth/heldout.jsonl not found: run `python -m stages.synthesize` first")
    if not FINAL.exists():
        raise PipelineError("models/final not found: run `python -m stages.train` first")
    with open(HELDOUT, encoding="utf-8") as handle:
        conversations = [json.loads(line) for line in handle]
    wanted = None if evaluate.directions == "all" else evaluate.directions
    items = test_items(conversations, wanted, evaluate.max_per_direction, evaluate.seed)
    if not items:
        raise PipelineError("no held-out translation items match evaluate.directions")
    flat = [item for direction in items.values() for item in direction]
    models = {"final": FINAL}
    if evaluate.evaluate_base:
        models = {"base": ROOT / base_model.path, **models}
    if (OUT / "predictions").exists():
        shutil.rmtree(OUT / "predictions")
    scores: dict[str, dict] = {}
    signatures: dict[str, dict] = {}
    notes: list[str] = []
    timing: dict[str, float] = {}
    for label, path in models.items():
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        started = time.perf_counter()
        raw = generate(
            model, tokenizer, [item.prompt for item in flat],
            batch_size=evaluate.batch_size, max_new_tokens=evaluate.max_new_tokens, num_beams=evaluate.num_beams,
        )
        timing[f"{label}_generation_s"] = round(time.perf_counter() - started, 2)
        hyps = [clean_output(text) for text in raw]
        del model
        gc.collect()
        by_item = dict(zip((item.id for item in flat), zip(hyps, raw)))
        scores[label] = {}
        for direction, direction_items in items.items():
            hyp = [by_item[i.id][0] for i in direction_items]
            result = score_corpus(hyp, [[i.reference for i in direction_items]], direction_items[0].tgt_lang)
            scores[label][direction] = result
            signatures[direction_items[0].tgt_lang] = result.signatures
            notes.extend(w for w in result.warnings if w not in notes)
            pred_path = OUT / "predictions" / label / f"{direction}.jsonl"
            pred_path.parent.mkdir(parents=True, exist_ok=True)
            with open(pred_path, "w", encoding="utf-8") as handle:
                for item in direction_items:
                    handle.write(json.dumps({
                        "id": item.id, "prompt": item.source, "reference": item.reference,
                        "hypothesis": by_item[item.id][0], "raw": by_item[item.id][1],
                    }, ensure_ascii=False) + "\n")
        log.info("%s: chrF++ %.2f, BLEU %.2f over %d directions (%d segments, %.1fs)", label,
                 sum(s.chrf_pp for s in scores[label].values()) / len(items),
                 sum(s.bleu for s in scores[label].values()) / len(items), len(items), len(flat),
                 timing[f"{label}_generation_s"])
    report = compare(scores.get("base"), scores["final"])
    report["segments"] = len(flat)
    report["signatures"] = signatures
    report["notes"] = notes
    write_json(OUT / "metrics.json", report)
    rows = per_language_rows(scores.get("base"), scores["final"])
    with open(OUT / "per_language.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    logger = ResilientLogger()
    with optional_stage_run(ROOT, "evaluate", tracking.experiment) as run:
        if run is not None:
            logger.log_params({f"evaluate.{k}": v for k, v in evaluate.model_dump().items()})
            for label, block in report.items():
                if label in ("final", "base", "delta"):
                    logger.log_metrics({f"{label}.{d}.{m}": v for d, vals in block.items() for m, v in vals.items() if m != "n"})
            logger.set_tags({f"signature.{lang}.{m}": s for lang, sigs in signatures.items() for m, s in sigs.items()})
    # Run identity and timings stay out of metrics.json, so identical scores leave that file byte-identical.
    write_json(OUT / "run.json", {
        "run_id": run.info.run_id if run is not None else None, "tracking_failures": logger.failures, "timing": timing,
    })


if __name__ == "__main__":
    run_stage("evaluate", ["evaluate", "base_model", "tracking"], main)
