"""The evaluation itself: every configured test set translated by the fine-tuned (and base) model, scored,
compared with reference systems and the champion, plus understanding tasks (lm-eval's, native XCOPA) and BayLing-80
when configured, gathered
into one EvaluationResult. Nothing is written here (bayling.evaluate.run writes it)."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bayling.config.base_model import BaseModelParams
from bayling.config.evaluate import EvaluateParams
from bayling.config.register import RegisterParams
from bayling.core.errors import PipelineError
from bayling.core.metric_keys import AVERAGE, averages, segments_key, source_language_key
from bayling.core.records import Conversation
from bayling.evaluate import scores as flat
from bayling.evaluate.bayling80 import Question
from bayling.evaluate.compare import Comparison, TestSets, against_base, against_champion, reference_ratios, reference_streams
from bayling.evaluate.engines import Replier
from bayling.evaluate.metrics import Scores
from bayling.evaluate.outcomes import UnderstandingRun
from bayling.evaluate.target_language import SourceLanguageShare
from bayling.evaluate.terms import found_terms, term_usage
from bayling.evaluate.test_sets import TestItem, load_test_set

log = logging.getLogger(__name__)
REPORT_MODELS = ["final", "base", "champion"]


@dataclass(frozen=True)
class Prediction:
    item: TestItem
    hypothesis: str  # cleaned: what is scored
    raw: str  # what the model generated

    def to_json(self) -> dict[str, Any]:
        row = {"id": self.item.id, "source": self.item.source, "reference": self.item.reference,
               "hypothesis": self.hypothesis, "raw": self.raw, "prompt": self.item.prompt}
        if self.item.terms:  # a constrained item: its terms, and which of them the hypothesis uses
            row.update(terms=list(self.item.terms), terms_found=found_terms(self.item.terms, self.hypothesis))
        return row


@dataclass
class ModelRun:
    """One model's outputs: per test set and direction, its predictions and scores."""

    label: str
    predictions: dict[str, dict[str, list[Prediction]]] = field(default_factory=dict)
    scores: dict[str, dict[str, Scores]] = field(default_factory=dict)
    answers: list[list[str]] | None = None  # BayLing-80, turn by turn
    seconds: float = 0.0
    cached: bool = False  # some outputs came from the generation cache
    # per test set and direction, how many outputs are in the source language (None: langid.py cannot tell)
    source_language: dict[str, dict[str, SourceLanguageShare | None]] = field(default_factory=dict)
    understanding: UnderstandingRun | None = None  # lm-eval tasks and native multiple-choice sets, per document

    def hypotheses(self) -> dict[str, dict[str, list[str]]]:
        return {name: {d: [p.hypothesis for p in preds] for d, preds in by_d.items()} for name, by_d in self.predictions.items()}


@dataclass
class EvaluationResult:
    metrics: dict[str, Any]  # the flat report, as reports/eval/metrics.json
    rows: list[dict[str, Any]]  # one per test set and direction (per_language.csv, charts, HTML)
    runs: dict[str, ModelRun]
    questions: list[Question] = field(default_factory=list)
    reviews: list[dict[str, Any]] = field(default_factory=list)
    review: dict[str, Any] = field(default_factory=dict)  # reports/eval/review.json: scores and moved segments per direction
    test_sets: TestSets = field(default_factory=dict)  # what was evaluated: the items every output must belong to
    champion: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # the champion's outputs, per test set and direction

    @property
    def notes(self) -> list[str]:
        return self.metrics["notes"]

    def timing(self) -> dict[str, float]:
        return {f"{label}_seconds": round(run.seconds, 2) for label, run in self.runs.items()}

    def understanding_rows(self) -> list[dict[str, Any]]:
        from bayling.evaluate.outcomes import rows

        return rows(self.metrics, understanding_names(self.runs), REPORT_MODELS)

    def report_models(self) -> list[str]:
        return [m for m in REPORT_MODELS if any(r.get(f"{m}_bleu") is not None for r in self.rows)]


def load_test_sets(params: EvaluateParams, root: Path, heldout: Iterable[Conversation] | None) -> TestSets:
    heldout_list = list(heldout) if heldout is not None else None
    test_sets = {t.name: load_test_set(t, root, heldout_list, params.seed) for t in params.test_sets}
    for name, items in test_sets.items():
        if not items:
            raise PipelineError(f"test set {name} has no items (check its directions)")
    return test_sets


def _translate(run: ModelRun, replier: Replier, model_dir: Path, params: EvaluateParams, test_sets: TestSets,
               metrics: dict[str, Any], notes: list[str], cache_dir: Path | None, tokenizer: Any,
               resolve: Callable[[str], Path]) -> None:
    from bayling.evaluate.budgets import budgets_for
    from bayling.evaluate.memo import translations
    from bayling.evaluate.metrics import score_corpus
    from bayling.evaluate.target_language import in_source_language
    from bayling.models.generation import clean_output

    # every test set's prompts in one call: batches fill across sets, and the token rates are computed once
    items = [item for by_direction in test_sets.values() for group in by_direction.values() for item in group]
    budgets = budgets_for(params, items, tokenizer, resolve)
    raw, hit = translations(params, replier, model_dir, [item.prompt for item in items], cache_dir, budgets)
    if hit:
        log.info("%s: translations from the generation cache (same model files, prompts and decoding)", run.label)
        run.cached = True
    if len(raw) != len(items):
        raise PipelineError(f"{run.label}: {len(raw)} outputs for the {len(items)} prompts of the test sets")
    position = 0  # outputs come back in prompt order: each direction takes its own slice, never a lookup by id
    for name, items_by_direction in test_sets.items():
        for direction, group in items_by_direction.items():
            predictions = [Prediction(item, clean_output(text), text) for item, text in zip(group, raw[position : position + len(group)])]
            position += len(group)
            result = score_corpus([p.hypothesis for p in predictions], reference_streams(group), group[0].tgt_lang)
            run.predictions.setdefault(name, {})[direction] = predictions
            run.scores.setdefault(name, {})[direction] = result
            copied = in_source_language([p.hypothesis for p in predictions], group[0].src_lang, group[0].tgt_lang)
            run.source_language.setdefault(name, {})[direction] = copied
            if copied is not None:
                metrics[source_language_key(name, direction, run.label)] = round(copied.share, 4)
            metrics[segments_key(name, direction)] = len(group)  # what a significance test had to go on
            metrics.update({f"signature.{name}.{group[0].tgt_lang}.{m}": s for m, s in result.signatures.items()})
            notes.extend(w for w in result.warnings if w not in notes)
        metrics[segments_key(name, AVERAGE)] = min(len(group) for group in items_by_direction.values())
        metrics.update(flat.flat_scores(name, run.label, run.scores[name]))
    metrics.update(outputs_term_usage(run.label, test_sets, run.hypotheses()))


def evaluate_models(
    params: EvaluateParams,
    base_model: BaseModelParams,
    register: RegisterParams,
    root: Path,
    final_dir: Path,
    heldout: Iterable[Conversation] | None,
    tracking_uri: str,
) -> EvaluationResult:
    """Generate, score and compare; nothing is written here (the stage writes the result)."""
    from transformers import AutoTokenizer

    from bayling.core.paths import resolve as resolve_in
    from bayling.evaluate import understanding_runs
    from bayling.evaluate.engines import LazyModel, LocalReplier, replier_for

    def resolve(path: str) -> Path:
        return resolve_in(path, root)

    test_sets = load_test_sets(params, root, heldout)
    models = {"base": root / base_model.path, "final": final_dir} if params.evaluate_base else {"final": final_dir}
    metrics: dict[str, Any] = {"primary_test_set": params.test_sets[0].name}
    notes: list[str] = []
    runs: dict[str, ModelRun] = {}
    questions: list[Question] = []
    if params.instructions:
        from bayling.evaluate.bayling80 import read_questions

        questions = read_questions([resolve(p) for p in params.instructions.paths], params.instructions.max_questions)
    cache_dir = resolve(params.generation_cache) if params.generation_cache else None
    if cache_dir is not None:
        from bayling.evaluate.memo import check_cache_dir

        check_cache_dir(cache_dir)  # before any model loads: a cache that cannot be written would lose the outputs
    for label, path in models.items():
        tokenizer = AutoTokenizer.from_pretrained(path)
        replier: Replier | None = replier_for(params, label, path, tokenizer)
        model: LazyModel | None = None
        started = time.perf_counter()
        run = runs[label] = ModelRun(label)
        _translate(run, replier, path, params, test_sets, metrics, notes, cache_dir, tokenizer, resolve)
        if understanding_runs.wanted(params):  # log-likelihoods: the local weights, or lm-eval's client of the server
            model = replier.model if isinstance(replier, LocalReplier) else LazyModel(path, params.precision)
            run.understanding = understanding_runs.score_model(params, label, path, model, tokenizer, root, resolve)
            metrics.update(run.understanding.metrics)
        if params.instructions:
            from bayling.evaluate.bayling80 import answer

            run.answers = answer(replier, questions, max_new_tokens=params.instructions.max_new_tokens)
        run.seconds = time.perf_counter() - started
        primary = averages(metrics, params.test_sets[0].name, label)
        log.info(
            "%s: %s chrF++ %.2f, BLEU %.2f (%.1fs)",
            label,
            params.test_sets[0].name,
            primary.get("chrf_pp", 0),
            primary.get("bleu", 0),
            run.seconds,
        )
        replier = model = None  # the weights go before the next model loads
        gc.collect()
    for name in test_sets:
        metrics.update(flat.deltas(metrics, name))
    final_scores = runs["final"].scores
    ratios = reference_ratios(params, test_sets, final_scores, resolve)
    base = against_base(params, test_sets, runs["base"].hypotheses(), runs["final"].hypotheses()) if "base" in runs else Comparison()
    champion = against_champion(params, register, test_sets, runs["final"].hypotheses(), tracking_uri, cache_dir, resolve)
    for comparison in (ratios, base, champion):
        metrics.update(comparison.metrics)
        notes.extend(comparison.notes)
    metrics.update(outputs_term_usage("champion", test_sets, champion.hypotheses))
    if "final" in runs and runs["final"].understanding is not None:
        final_understanding = runs["final"].understanding
        if "base" in runs and runs["base"].understanding is not None:
            metrics.update(understanding_runs.against_base(params, final_understanding, runs["base"].understanding))
        found, said = understanding_runs.against_champion(params, register, final_understanding, tracking_uri, root, resolve)
        metrics.update(found)
        notes.extend(said)
    from bayling.evaluate.comet import comet_scores

    comet = comet_scores(params, test_sets, {label: run.hypotheses() for label, run in runs.items()})
    metrics.update(comet.metrics)
    notes.extend(comet.notes)
    reviews: list[dict[str, Any]] = []
    if params.instructions and params.instructions.judge.enabled:
        reviews = _judge(params, questions, runs, metrics, notes, root, resolve)
    from bayling.evaluate.invariants import identical_directions

    for label, run in runs.items():
        notes.extend(identical_directions(label, run.hypotheses()))
    notes.extend(source_language_notes(runs))
    if params.engine == "hf" and params.precision == "auto":
        from bayling.models.generation import resolved_precision

        notes.append(f"generated with {resolved_precision('auto')} weights (evaluate.precision: auto on this machine)")
    metrics["notes"] = notes
    rows = flat.per_language_rows(metrics, list(test_sets), REPORT_MODELS)
    from bayling.evaluate.review import build_review

    review = build_review(test_sets, runs["final"].hypotheses(), champion.hypotheses or None,
                          runs["base"].hypotheses() if "base" in runs else None, metrics,
                          champion_absence=champion.absence,
                          understanding=understanding_names(runs))
    return EvaluationResult(metrics, rows, runs, questions, reviews, review, test_sets, champion.hypotheses)


def understanding_names(runs: dict[str, ModelRun]) -> list[str]:
    """The understanding entries and native multiple-choice sets any model was scored on."""
    return sorted({name for run in runs.values() if run.understanding for name in run.understanding.outcomes})


def outputs_term_usage(label: str, test_sets: TestSets, hypotheses: dict[str, dict[str, list[str]]]) -> dict[str, float]:
    """Term usage keys of a model's outputs (one per item in item order: an evaluated model's, the champion's) on the
    constrained sets among `test_sets`."""
    out: dict[str, float] = {}
    for name, by_direction in hypotheses.items():
        usage = {direction: term_usage([item.terms for item in test_sets[name][direction]], outputs)
                 for direction, outputs in by_direction.items() if all(item.terms for item in test_sets[name][direction])}
        out.update(flat.term_usage_scores(name, label, usage))
    return out


def source_language_notes(runs: dict[str, ModelRun], floor: float = 0.2, rise: float = 0.1, fewest: int = 5) -> list[str]:
    """A note for each direction where the fine-tuned model answers in the source language at least `floor` of the
    time (and at least `fewest` outputs: two of a held-out split's four say little) and `rise` more often than its
    base: a score change there measures copying, not translation."""
    final, base = runs.get("final"), runs.get("base")
    if final is None:
        return []
    notes = []
    for name, by_direction in final.source_language.items():
        for direction, copied in by_direction.items():
            before = base.source_language.get(name, {}).get(direction) if base is not None else None
            if copied is None or copied.share < floor or copied.in_source < fewest \
                    or (before is not None and copied.share - before.share < rise):
                continue
            was = f" (base: {before.in_source} of {before.judged})" if before is not None else ""
            notes.append(f"{name} {direction}: {copied.in_source} of {copied.judged} fine-tuned outputs are in the source "
                         f"language{was}; a score change there measures copying, not translation")
    return notes


def _judge(
    params: EvaluateParams,
    questions: list[Question],
    runs: dict[str, ModelRun],
    metrics: dict[str, Any],
    notes: list[str],
    root: Path,
    resolve: Callable[[str], Path],
) -> list[dict[str, Any]]:
    from bayling.evaluate.bayling80 import read_answers
    from bayling.evaluate.judge import run_judge

    assert params.instructions is not None
    spec = params.instructions.judge
    if spec.reference == "base":
        if "base" not in runs:
            notes.append("judge skipped: reference 'base' needs evaluate.evaluate_base")
            return []
        reference = dict(zip((q.id for q in questions), runs["base"].answers or []))
        reference_id = "base"
    else:
        reference = read_answers(resolve(spec.reference))
        reference_id = Path(spec.reference).stem
    outcome = run_judge(spec, questions, runs["final"].answers or [], reference, reference_id, root)
    metrics.update(outcome.metrics)
    notes.extend(outcome.notes)
    return outcome.reviews
