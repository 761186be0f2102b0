"""Stage 5, evaluate: translate every configured test set with the fine-tuned and the base model, score,
compare with reference systems and with the current champion, and report.

    python -m stages.evaluate
    python -m stages.evaluate score --hyp FILE --ref FILE [--ref FILE ...] --target-lang LANG [--json]

The pipeline form reads evaluate.test_sets (the held-out split, WMT-style files, FLORES-style
folders), generates in batches with left padding (greedy, or beam search with evaluate.num_beams),
and scores with sacreBLEU: BLEU with the target language's tokenizer, chrF2, chrF2++. It adds
capability ratios against reference systems' outputs, paired-bootstrap p-values against the
champion's stored predictions, XCOPA accuracy and BayLing-80 answers (with an optional LLM judge)
when configured. Writes reports/eval/metrics.json (flat keys), per_language.csv, predictions/,
report.html with charts/, and run.json (BayLing-80 answers and reviews go in predictions/instructions/).
The score form scores an existing hypothesis file; with --json its last line is one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bayling.errors import PipelineError
from bayling.params import BaseModelParams, EvaluateParams, RegisterParams, TrackingParams
from stages._common import ROOT, resolve, run_stage, write_json

log = logging.getLogger("evaluate")
HELDOUT = ROOT / "data" / "synth" / "heldout.jsonl"
FINAL = ROOT / "models" / "final"
OUT = ROOT / "reports" / "eval"


def score_command(argv: list[str]) -> int:
    """`score`: BLEU/chrF/chrF++ of a hypothesis file, as the official tables compute them."""
    from bayling.languages import get_language
    from bayling.metrics import score_files

    parser = argparse.ArgumentParser(prog="python -m stages.evaluate score", description=score_command.__doc__)
    parser.add_argument("--hyp", required=True, help="hypothesis file, one segment per line")
    parser.add_argument("--ref", required=True, action="append", help="reference file (repeat for several, used in this order)")
    parser.add_argument("--target-lang", required=True, help="FLORES-200 code of the target language, e.g. zho_Hans")
    parser.add_argument("--json", action="store_true", help="end with one JSON line: bleu, chrf, chrf_pp, signatures")
    args = parser.parse_args(argv)
    try:
        get_language(args.target_lang)
        scores = score_files(args.hyp, args.ref, args.target_lang)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for warning in scores.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"BLEU {scores.bleu:.2f}  chrF {scores.chrf:.2f}  chrF++ {scores.chrf_pp:.2f}  ({scores.n} segments)")
    for metric, signature in scores.signatures.items():
        print(f"  {metric}: {signature}")
    if args.json:
        print(json.dumps({"bleu": scores.bleu, "chrf": scores.chrf, "chrf_pp": scores.chrf_pp, "signatures": scores.signatures}))
    return 0


def main(evaluate: EvaluateParams, base_model: BaseModelParams, register: RegisterParams, tracking: TrackingParams) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bayling import evaluation, plots, report
    from bayling.generation import clean_output, generate
    from bayling.metrics import score_corpus
    from bayling.tracking import ResilientLogger, optional_stage_run

    if not FINAL.exists():
        raise PipelineError("models/final not found: run `python -m stages.train` first")
    heldout = None
    if any(t.kind == "heldout" for t in evaluate.test_sets):
        if not HELDOUT.exists():
            raise PipelineError("data/synth/heldout.jsonl not found: run `python -m stages.synthesize` first")
        with open(HELDOUT, encoding="utf-8") as handle:
            heldout = [json.loads(line) for line in handle]
    test_sets = {t.name: evaluation.load_test_set(t, ROOT, heldout, evaluate.seed) for t in evaluate.test_sets}
    for name, items in test_sets.items():
        if not items:
            raise PipelineError(f"test set {name} has no items (check its directions)")
    for folder in ("predictions", "charts"):
        shutil.rmtree(OUT / folder, ignore_errors=True)
    models = {"base": ROOT / base_model.path, "final": FINAL} if evaluate.evaluate_base else {"final": FINAL}
    metrics: dict = {"primary_test_set": evaluate.test_sets[0].name}
    notes: list[str] = []
    scores: dict = {}
    hyps: dict = {}
    timing: dict = {}
    answers: dict = {}
    for label, path in models.items():
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        started = time.perf_counter()
        for name, items_by_direction in test_sets.items():
            flat = [item for items in items_by_direction.values() for item in items]
            raw = generate(model, tokenizer, [item.prompt for item in flat], batch_size=evaluate.batch_size,
                           max_new_tokens=evaluate.max_new_tokens, num_beams=evaluate.num_beams)
            by_id = {item.id: (clean_output(text), text) for item, text in zip(flat, raw)}
            for direction, items in items_by_direction.items():
                hyp = [by_id[i.id][0] for i in items]
                result = score_corpus(hyp, [list(stream) for stream in zip(*(i.references for i in items))], items[0].tgt_lang)
                scores.setdefault(label, {}).setdefault(name, {})[direction] = result
                hyps.setdefault(label, {}).setdefault(name, {})[direction] = hyp
                metrics.update({f"signature.{items[0].tgt_lang}.{m}": s for m, s in result.signatures.items()})
                notes.extend(w for w in result.warnings if w not in notes)
                _write_predictions(OUT / "predictions" / label / name / f"{direction}.jsonl", items, by_id)
            metrics.update(evaluation.flat_scores(name, label, scores[label][name]))
        if evaluate.xcopa:
            metrics.update(_xcopa(evaluate, model, tokenizer, label))
        if evaluate.instructions:
            answers[label] = _answer_instructions(evaluate, model, tokenizer, label)
        timing[f"{label}_seconds"] = round(time.perf_counter() - started, 2)
        averages = evaluation.averages(metrics, evaluate.test_sets[0].name, label)
        log.info("%s: %s chrF++ %.2f, BLEU %.2f (%.1fs)", label, evaluate.test_sets[0].name, averages.get("chrf_pp", 0),
                 averages.get("bleu", 0), timing[f"{label}_seconds"])
        del model
        gc.collect()
    for name in test_sets:
        metrics.update(evaluation.deltas(metrics, name))
    metrics.update(_reference_ratios(evaluate, test_sets, scores, notes))
    metrics.update(_against_champion(evaluate, register, test_sets, hyps, notes))
    metrics.update(_comet(evaluate, test_sets, hyps, notes))
    if evaluate.instructions and evaluate.instructions.judge.enabled:
        metrics.update(_judge(evaluate, answers, notes))
    metrics["notes"] = notes
    write_json(OUT / "metrics.json", metrics)
    model_columns = ["final", "base", "champion"]
    rows = evaluation.per_language_rows(metrics, list(test_sets), model_columns)
    with open(OUT / "per_language.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    charts = []
    for metric in ("chrf_pp", "bleu"):
        chart = OUT / "charts" / f"{metric}.png"
        plots.model_comparison(rows, metric, model_columns, chart, f"{metric} per direction: candidate vs base vs champion")
        charts.append(chart)
    (OUT / "report.html").write_text(report.render_html(metrics, rows, charts, [m for m in model_columns if any(r.get(f"{m}_bleu") is not None for r in rows)]), "utf-8")
    logger = ResilientLogger()
    with optional_stage_run(ROOT, "evaluate", tracking.experiment) as run:
        if run is not None:
            import mlflow

            logger.log_params({"evaluate.test_sets": ",".join(test_sets), "evaluate.num_beams": evaluate.num_beams,
                               "evaluate.max_new_tokens": evaluate.max_new_tokens, "evaluate.batch_size": evaluate.batch_size})
            logger.log_metrics({k.replace("/", "_"): v for k, v in metrics.items() if isinstance(v, (int, float)) and v == v})
            logger.set_tags({k: v for k, v in metrics.items() if k.startswith("signature.")})
            for artifact in [OUT / "metrics.json", OUT / "per_language.csv", OUT / "report.html", *charts]:
                logger._call(f"artifact {artifact.name}", mlflow.log_artifact, str(artifact), "report")
    write_json(OUT / "run.json", {"run_id": run.info.run_id if run is not None else None, "tracking_failures": logger.failures, "timing": timing})


def _write_predictions(path: Path, items: list, by_id: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for item in items:
            handle.write(json.dumps({"id": item.id, "source": item.source, "reference": item.reference,
                                     "hypothesis": by_id[item.id][0], "raw": by_id[item.id][1]}, ensure_ascii=False) + "\n")


def _xcopa(evaluate: EvaluateParams, model, tokenizer, label: str) -> dict:  # type: ignore[no-untyped-def]
    from bayling.choice import evaluate_choices, read_xcopa

    spec = evaluate.xcopa
    out = {}
    for lang in spec.languages:
        path = resolve(spec.dir) / lang / f"{spec.split}.{lang}.jsonl"
        items = read_xcopa(path, lang, spec.max_items)
        out[f"xcopa.{lang}.{label}.accuracy"] = round(evaluate_choices(model, tokenizer, items, evaluate.batch_size, spec.length_normalized), 4)
    out[f"xcopa.avg.{label}.accuracy"] = round(sum(out.values()) / len(out), 4)
    return out


def _answer_instructions(evaluate: EvaluateParams, model, tokenizer, label: str) -> dict:  # type: ignore[no-untyped-def]
    from bayling.instructions import answer, read_questions

    spec = evaluate.instructions
    questions = read_questions([resolve(p) for p in spec.paths], spec.max_questions)
    replies = answer(model, tokenizer, questions, batch_size=evaluate.batch_size, max_new_tokens=spec.max_new_tokens)
    path = OUT / "predictions" / "instructions" / f"{label}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for question, reply in zip(questions, replies):
            handle.write(json.dumps({"question_id": question.id, "model_id": label, "text": reply}, ensure_ascii=False) + "\n")
    return {"questions": questions, "answers": replies}


def _reference_ratios(evaluate: EvaluateParams, test_sets: dict, scores: dict, notes: list) -> dict:
    """Capability ratios: our scores over each configured reference system's, per direction and on average."""
    from bayling.metrics import capability_ratios, read_segments, score_corpus

    out = {}
    for spec in evaluate.test_sets:
        for system, files in spec.reference_systems.items():
            theirs = {}
            for direction, path in files.items():
                items = test_sets[spec.name].get(direction)
                if not items:
                    notes.append(f"reference system {system} has outputs for {direction}, which test set {spec.name} does not evaluate")
                    continue
                lines = read_segments(resolve(path), f"reference system {system}")
                if len(lines) < len(items):
                    raise PipelineError(f"reference system {system} ({path}) has {len(lines)} lines; test set {spec.name} {direction} needs {len(items)}")
                theirs[direction] = score_corpus(lines[: len(items)], [list(s) for s in zip(*(i.references for i in items))], items[0].tgt_lang)
                out.update({f"{spec.name}.{direction}.{system}.{m}": round(getattr(theirs[direction], m), 4) for m in ("bleu", "chrf", "chrf_pp")})
            for key, ratios in capability_ratios(scores["final"][spec.name], theirs).items():
                where = "avg" if key == "mean" else key
                out.update({f"{spec.name}.{where}.ratio_vs_{system}.{m}": round(v, 4) for m, v in ratios.items()})
    return out


def _against_champion(evaluate: EvaluateParams, register: RegisterParams, test_sets: dict, hyps: dict, notes: list) -> dict:
    """Paired bootstrap of the candidate against the champion's stored predictions, per direction."""
    from bayling.metrics import paired_bootstrap
    from bayling.registry import champion_predictions
    from bayling.tracking import tracking_uri

    if not evaluate.compare_with_champion:
        return {}
    try:
        import mlflow

        mlflow.set_tracking_uri(tracking_uri(ROOT))
        with tempfile.TemporaryDirectory() as tmp:
            found = champion_predictions(register.model_name, register.champion_alias, Path(tmp))
            if found is None:
                notes.append(f"no '{register.champion_alias}' version of {register.model_name} with stored predictions: significance test skipped")
                return {}
            version, folder = found
            out = {"champion_version": int(version)}
            for name, items_by_direction in test_sets.items():
                for direction, items in items_by_direction.items():
                    stored = folder / "final" / name / f"{direction}.jsonl"
                    if not stored.exists():
                        notes.append(f"champion v{version} has no predictions for {name} {direction}")
                        continue
                    theirs = {row["id"]: row["hypothesis"] for row in map(json.loads, stored.read_text("utf-8").splitlines())}
                    if any(i.id not in theirs for i in items):
                        notes.append(f"champion v{version} predictions for {name} {direction} cover other segments; skipped")
                        continue
                    result = paired_bootstrap([theirs[i.id] for i in items], hyps["final"][name][direction],
                                              [list(s) for s in zip(*(i.references for i in items))], items[0].tgt_lang,
                                              samples=evaluate.bootstrap_samples, seed=evaluate.seed or 12345)
                    for m in result.p_values:
                        out[f"{name}.{direction}.champion.{m}"] = round(result.baseline[m], 4)
                        out[f"{name}.{direction}.p_vs_champion.{m}"] = round(result.p_values[m], 6)
            return out
    except Exception as exc:  # the registry being unreachable must not lose the evaluation itself
        notes.append(f"champion comparison skipped: {type(exc).__name__}: {exc}")
        return {}


def _comet(evaluate: EvaluateParams, test_sets: dict, hyps: dict, notes: list) -> dict:
    if not evaluate.comet_model:
        notes.append("COMET skipped: no local COMET checkpoint configured (evaluate.comet_model)")
        return {}
    try:
        from comet import load_from_checkpoint  # type: ignore[import-not-found]
    except ImportError:
        notes.append("COMET skipped: the unbabel-comet package is not installed")
        return {}
    model = load_from_checkpoint(evaluate.comet_model)
    out = {}
    for label, by_set in hyps.items():
        for name, by_direction in by_set.items():
            for direction, hyp in by_direction.items():
                items = test_sets[name][direction]
                data = [{"src": i.source, "mt": h, "ref": i.reference} for i, h in zip(items, hyp)]
                out[f"{name}.{direction}.{label}.comet"] = round(float(model.predict(data, batch_size=evaluate.batch_size, gpus=0).system_score), 4)
    return out


def _judge(evaluate: EvaluateParams, answers: dict, notes: list) -> dict:
    from collections import Counter

    from bayling import teacher
    from bayling.instructions import judge_messages, read_answers, review_record

    spec = evaluate.instructions.judge
    questions = answers["final"]["questions"]
    if spec.reference == "base":
        if "base" not in answers:
            notes.append("judge skipped: reference 'base' needs evaluate.evaluate_base")
            return {}
        reference = dict(zip((q.id for q in questions), answers["base"]["answers"]))
        reference_id = "base"
    else:
        reference = read_answers(resolve(spec.reference))
        reference_id = Path(spec.reference).stem
    pairs = [(q, reference.get(q.id) or reference.get(q.id.split(":")[-1]), a) for q, a in zip(questions, answers["final"]["answers"])]
    pairs = [(q, r, a) for q, r, a in pairs if r is not None]
    cache = teacher.ResponseCache(ROOT / spec.cache_path)
    stats = teacher.TeacherStats()
    try:
        reviews = teacher.complete(teacher.settings_from(spec), [judge_messages(q, r, a) for q, r, a in pairs], cache, stats)
    finally:
        cache.close()
    records = [review_record(q, text, spec.model, reference_id, "final") for (q, _, _), text in zip(pairs, reviews)]
    path = OUT / "predictions" / "instructions" / "reviews.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    counts = Counter(r["outcome"] for r in records)
    judged = counts["WIN"] + counts["LOSS"] + counts["TIE"]
    if counts["ERROR"]:
        notes.append(f"judge: {counts['ERROR']} reviews without scores")
    return {
        "instructions.judge.win": counts["WIN"], "instructions.judge.loss": counts["LOSS"], "instructions.judge.tie": counts["TIE"],
        "instructions.judge.error": counts["ERROR"],
        "instructions.judge.win_rate": round((counts["WIN"] + 0.5 * counts["TIE"]) / judged, 4) if judged else None,
    }


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "score":
        sys.exit(score_command(sys.argv[2:]))
    run_stage("evaluate", ["evaluate", "base_model", "register", "tracking"], main)
