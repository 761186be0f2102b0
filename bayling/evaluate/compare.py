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
from bayling.evaluate.metrics import Scores, capability_ratios, paired_bootstrap, read_segments, score_corpus
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
                      cache_dir: Path | None) -> dict[str, str]:
    """The champion's own translations of `items`, from its registered model, with the candidate's decoding settings
    on local weights."""
    from transformers import AutoTokenizer

    from bayling.evaluate.engines import local_replier
    from bayling.evaluate.generation import clean_output
    from bayling.evaluate.memo import translations
    from bayling.register.champion import champion_model

    folder = champion_model(model_name, version, dest)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    # always on local weights: the champion's folder was just downloaded here, where a remote server cannot read it
    replier = local_replier(params, folder, tokenizer)
    raw, _ = translations(params, replier, folder, [i.prompt for i in items], cache_dir)
    return {item.id: clean_output(text) for item, text in zip(items, raw)}


def against_champion(params: EvaluateParams, register: RegisterParams, test_sets: TestSets,
                     final: dict[str, dict[str, list[str]]], tracking_uri: str, cache_dir: Path | None = None) -> Comparison:
    """Paired bootstrap of the candidate against the champion, per direction.

    The champion's predictions stored with its version are used where they cover the same segments;
    where they do not (a new split, a new test set), the champion's registered model translates the
    segments again, so the comparison is never skipped for want of overlap. An unreachable registry is
    a note, not a failed evaluation (the gate then refuses the candidate, having nothing to compare).
    """
    import mlflow
    from botocore.exceptions import BotoCoreError, ClientError
    from mlflow.exceptions import MlflowException

    from bayling.register.champion import champion_predictions

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
            theirs: dict[str, str] = {}
            missing: list[TestItem] = []
            for name, items_by_direction in test_sets.items():
                for direction, items in items_by_direction.items():
                    stored = folder / "final" / name / f"{direction}.jsonl" if folder else None
                    rows = [json.loads(line) for line in stored.read_text("utf-8").splitlines()] if stored and stored.exists() else []
                    known = {row["id"]: row["hypothesis"] for row in rows}
                    if all(i.id in known for i in items):
                        theirs.update({i.id: known[i.id] for i in items})
                    else:
                        missing.extend(items)
            if missing:
                theirs.update(_champion_outputs(params, register.model_name, version, missing, Path(tmp) / "model", cache_dir))
                out.metrics["champion_regenerated_segments"] = len(missing)
                out.notes.append(f"champion v{version}'s stored predictions do not cover {len(missing)} segments: translated them "
                                 "again with its registered model")
                if params.engine != "hf":
                    out.notes.append("the champion's re-translation ran on local weights (engine hf, evaluate.precision), the "
                                     f"candidate's on the {params.engine} server: the comparison also compares the two decoders")
            for name, items_by_direction in test_sets.items():
                for direction, items in items_by_direction.items():
                    outputs = out.hypotheses.setdefault(name, {})[direction] = [theirs[i.id] for i in items]
                    result = paired_bootstrap(outputs, final[name][direction], reference_streams(items),
                                              items[0].tgt_lang, samples=params.bootstrap_samples, seed=params.seed or 12345)
                    for m in result.p_values:
                        out.metrics[score_key(name, direction, "champion", m)] = round(result.baseline[m], 4)
                        out.metrics[score_key(name, direction, "p_vs_champion", m)] = round(result.p_values[m], 6)
    # the registry or its artifact store being unreachable (or missing credentials) must not lose the evaluation itself
    except (MlflowException, OSError, BotoCoreError, ClientError) as exc:
        out.notes.append(f"champion comparison skipped: {type(exc).__name__}: {exc}")
        out.metrics = {}
        out.hypotheses = {}
        out.absence = "champion unreachable"
    return out
