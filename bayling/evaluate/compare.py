"""The candidate against others on the same segments: capability ratios over reference systems' released
outputs, and sacreBLEU's paired bootstrap against the predictions stored with the current champion."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bayling.config.evaluate import EvaluateParams
from bayling.config.register import RegisterParams
from bayling.core.errors import PipelineError
from bayling.core.metric_keys import AVERAGE, METRICS, score_key
from bayling.core.test_sets import read_segments
from bayling.evaluate.metrics import Scores, average_change, capability_ratios, paired_bootstrap, score_corpus
from bayling.evaluate.test_sets import TestItem

TestSets = dict[str, dict[str, list[TestItem]]]  # test set -> direction -> items


@dataclass
class Comparison:
    metrics: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # the compared system's outputs, test set -> direction -> one per item (the champion's, for the review)
    hypotheses: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    # why there are no champion outputs, as the review's label says it: "no champion", "champion comparison off"...
    absence: str = "no champion"


def reference_streams(items: list[TestItem]) -> list[list[str]]:
    """The items' references as sacreBLEU wants them: one list per reference stream."""
    return [list(stream) for stream in zip(*(i.references for i in items))]


@dataclass(frozen=True)
class Comparator:
    """How one comparator's paired test against the candidate is keyed in metrics.json: its own score, the
    two-sided p-value, and the change (candidate minus comparator) with its 95% bootstrap interval."""

    score: str | None  # None: the comparator's scores are keyed elsewhere (the base model's own run)
    p_value: str
    change: str | None  # None: the change is keyed elsewhere (`delta`, final minus base, from the scores)
    low: str
    high: str


BASE = Comparator(score=None, p_value="p_vs_base", change=None, low="delta_low", high="delta_high")
CHAMPION = Comparator(score="champion", p_value="p_vs_champion", change="delta_vs_champion", low="delta_vs_champion_low",
                      high="delta_vs_champion_high")


def paired_scores(params: EvaluateParams, name: str, items_by_direction: dict[str, list[TestItem]], theirs: dict[str, list[str]],
                  ours: dict[str, list[str]], comparator: Comparator) -> dict[str, float]:
    """The paired bootstrap of the candidate's outputs (`ours`) against a comparator's (`theirs`) on one test set,
    per direction and on the macro average over its directions, keyed as `comparator` says."""
    results = {}
    for direction, items in items_by_direction.items():
        if len(theirs[direction]) != len(items) or len(ours[direction]) != len(items):
            raise PipelineError(f"test set {name}, {direction}: {len(items)} items, {len(ours[direction])} candidate outputs, "
                                f"{len(theirs[direction])} {comparator.p_value.removeprefix('p_vs_')} outputs")
        results[direction] = paired_bootstrap(theirs[direction], ours[direction], reference_streams(items), items[0].tgt_lang,
                                              samples=params.bootstrap_samples, seed=params.seed or 12345)
    if results:
        results[AVERAGE] = average_change(list(results.values()))
    out: dict[str, float] = {}
    for direction, result in results.items():
        for m in METRICS:
            if comparator.score:
                out[score_key(name, direction, comparator.score, m)] = round(result.baseline[m], 4)
            if comparator.change:
                out[score_key(name, direction, comparator.change, m)] = round(result.change(m), 4)
            out[score_key(name, direction, comparator.p_value, m)] = round(result.p_values[m], 6)
            out[score_key(name, direction, comparator.low, m)] = round(result.intervals[m][0], 4)
            out[score_key(name, direction, comparator.high, m)] = round(result.intervals[m][1], 4)
    return out


def against_base(params: EvaluateParams, test_sets: TestSets, base: dict[str, dict[str, list[str]]],
                 final: dict[str, dict[str, list[str]]]) -> Comparison:
    """Paired bootstrap of the fine-tuned model against its base model on every test set, per direction and on
    the average: whether fine-tuning moved the scores beyond what the segments' sampling explains."""
    out = Comparison()
    for name, items_by_direction in test_sets.items():
        out.metrics.update(paired_scores(params, name, items_by_direction, base[name], final[name], BASE))
    return out


def reference_ratios(params: EvaluateParams, test_sets: TestSets, final: dict[str, dict[str, Scores]],
                     resolve: Callable[[str], Path]) -> Comparison:
    """Our scores over each configured reference system's, per direction and on average."""
    out = Comparison()
    for spec in params.test_sets:
        for system, files in spec.reference_systems.items():
            theirs = {}
            for direction, path in files.items():
                items = test_sets[spec.name].get(direction)
                if not items:
                    out.notes.append(f"reference system {system} has outputs for {direction}, which test set {spec.name} does not evaluate")
                    continue
                lines = read_segments(resolve(path), f"reference system {system}")
                if len(lines) < len(items):
                    raise PipelineError(f"reference system {system} ({path}) has {len(lines)} lines; "
                                        f"test set {spec.name} {direction} needs {len(items)}")
                theirs[direction] = score_corpus(lines[: len(items)], reference_streams(items), items[0].tgt_lang)
                out.metrics.update({score_key(spec.name, direction, system, m): round(getattr(theirs[direction], m), 4) for m in METRICS})
            for key, ratios in capability_ratios(final[spec.name], theirs).items():
                where = AVERAGE if key == "mean" else key
                out.metrics.update({score_key(spec.name, where, f"ratio_vs_{system}", m): round(v, 4) for m, v in ratios.items()})
    return out


def _champion_outputs(params: EvaluateParams, model_name: str, version: str, items: list[TestItem], dest: Path,
                      cache_dir: Path | None, resolve: Callable[[str], Path] | None = None) -> list[str]:
    """The champion's own translations of `items`, from its registered model, with the candidate's decoding settings
    on local weights."""
    from transformers import AutoTokenizer

    from bayling.evaluate.budgets import budgets_for
    from bayling.evaluate.engines import local_replier
    from bayling.evaluate.memo import translations
    from bayling.models.champion import champion_model
    from bayling.models.generation import clean_output

    folder = champion_model(model_name, version, dest)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    # always on local weights: the champion's folder was just downloaded here, where a remote server cannot read it
    replier = local_replier(params, folder, tokenizer)
    budgets = budgets_for(params, items, tokenizer, resolve) if resolve else None
    raw, _ = translations(params, replier, folder, [i.prompt for i in items], cache_dir, budgets)
    if len(raw) != len(items):
        raise PipelineError(f"champion v{version}: {len(raw)} outputs for {len(items)} prompts")
    return [clean_output(text) for text in raw]  # in item order


def stored_outputs(path: Path, items: list[TestItem]) -> list[str] | None:
    """The hypotheses of a champion's stored predictions file, one per item in item order, when the file holds
    exactly these items: the same ids, sources, references and prompts in the same order. Anything else (another
    split, another segment count, another prompt wording or system prompt, predictions written before item ids
    named their direction or before the prompt was stored) is None, and the champion's model translates the
    items again."""
    if not path.is_file():
        return None
    try:
        rows = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if len(rows) != len(items):
        return None
    for row, item in zip(rows, items):
        if not isinstance(row, dict) or not isinstance(row.get("hypothesis"), str):
            return None
        if (row.get("id"), row.get("source"), row.get("reference"), row.get("prompt")) != (item.id, item.source, item.reference,
                                                                                          item.prompt):
            return None
    return [row["hypothesis"] for row in rows]


def against_champion(params: EvaluateParams, register: RegisterParams, test_sets: TestSets,
                     final: dict[str, dict[str, list[str]]], tracking_uri: str, cache_dir: Path | None = None,
                     resolve: Callable[[str], Path] | None = None) -> Comparison:
    """Paired bootstrap of the candidate against the champion, per direction.

    The champion's predictions stored with its version are used where they cover the same segments;
    where they do not (a new split, a new test set), the champion's registered model translates the
    segments again, so the comparison is never skipped for want of overlap. An unreachable registry is
    a note, not a failed evaluation (the gate then refuses the candidate, having nothing to compare).
    """
    import mlflow
    from botocore.exceptions import BotoCoreError, ClientError
    from mlflow.exceptions import MlflowException

    from bayling.models.champion import champion_predictions

    out = Comparison()
    if not params.compare_with_champion:
        out.absence = "champion comparison off"
        return out
    mlflow.set_tracking_uri(tracking_uri)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            found = champion_predictions(register.model_name, register.champion_alias, Path(tmp) / "predictions")
            if found is None:
                out.notes.append(f"no '{register.champion_alias}' version of {register.model_name}: nothing to compare with")
                return out
            version, folder = found
            out.metrics["champion_version"] = int(version)
            # outputs are kept per test set and direction, in item order: never pooled and looked up by id
            theirs: dict[tuple[str, str], list[str]] = {}
            missing: list[tuple[str, str]] = []
            for name, items_by_direction in test_sets.items():
                for direction, items in items_by_direction.items():
                    stored = stored_outputs(folder / "final" / name / f"{direction}.jsonl", items) if folder else None
                    if stored is None:
                        missing.append((name, direction))
                    else:
                        theirs[name, direction] = stored
            if missing:
                pending = [item for name, direction in missing for item in test_sets[name][direction]]
                outputs = _champion_outputs(params, register.model_name, version, pending, Path(tmp) / "model", cache_dir, resolve)
                position = 0
                for name, direction in missing:
                    size = len(test_sets[name][direction])
                    theirs[name, direction] = outputs[position : position + size]
                    position += size
                out.metrics["champion_regenerated_segments"] = len(pending)
                out.notes.append(f"champion v{version}'s stored predictions do not cover {len(pending)} segments: translated them "
                                 "again with its registered model")
                if params.engine != "hf":
                    out.notes.append("the champion's re-translation ran on local weights (engine hf, evaluate.precision), the "
                                     f"candidate's on the {params.engine} server: the comparison also compares the two decoders")
            for name, items_by_direction in test_sets.items():
                out.hypotheses[name] = {direction: theirs[name, direction] for direction in items_by_direction}
                out.metrics.update(paired_scores(params, name, items_by_direction, out.hypotheses[name], final[name], CHAMPION))
    # the registry or its artifact store being unreachable (or missing credentials) must not lose the evaluation itself
    except (MlflowException, OSError, BotoCoreError, ClientError) as exc:
        out.notes.append(f"champion comparison skipped: {type(exc).__name__}: {exc}")
        out.metrics = {}
        out.hypotheses = {}
        out.absence = "champion unreachable"
    return out
