"""Understanding on each evaluated model, and the paired tests that the gate reads: lm-eval's tasks
(evaluate.understanding) and the native multiple-choice sets (evaluate.xcopa), scored on one model, then the
fine-tuned model's documents against its base model's and against the champion's.

The champion's outcomes come from the predictions stored with its registered version; an entry they do not cover
with the same documents, posed the same way (another limit, another lm-eval prompt, an entry added since), is
scored again on the champion's registered model, as its translations are."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bayling.config.evaluate import EvaluateParams
from bayling.config.register import RegisterParams
from bayling.evaluate.outcomes import BASE, CHAMPION, Outcomes, UnderstandingRun, compare, merge, read_outcomes, same_documents

log = logging.getLogger(__name__)
OUTCOMES_FOLDER = "understanding"  # under reports/eval/predictions/, one folder per model label


def wanted(params: EvaluateParams) -> bool:
    return bool(params.xcopa or params.understanding)


def score_model(params: EvaluateParams, label: str, model_dir: Path, model: Callable[[], Any], tokenizer: Any, root: Path,
                resolve: Callable[[str], Path], names: set[str] | None = None) -> UnderstandingRun:
    """Every configured entry (or those in `names`) on one model. The native sets and lm-eval's `hf` model score the
    local weights (`model()` loads them once); with evaluate.engine openai, lm-eval asks the server instead."""
    from bayling.evaluate.understanding import local_lm, run_tasks, served_lm
    from bayling.evaluate.xcopa import evaluate_sets

    runs = []
    native = [s for s in params.choice_sets() if names is None or s.name in names]
    if native:
        runs.append(evaluate_sets(native, model(), tokenizer, label, resolve, params.batch_size))
    for spec in params.understanding or []:
        if names is not None and spec.name not in names:
            continue
        batch = spec.batch_size or params.batch_size
        lm = served_lm(params, label, model_dir) if params.engine == "openai" else local_lm(model(), tokenizer, batch)
        runs.append(run_tasks(spec, lm, label, root, params.seed))
    run = merge(runs)
    if run.items:
        log.info("%s: %d understanding items in %.1fs (%.1f items/s)", label, run.items, run.seconds, run.items / run.seconds)
    return run


def against_base(params: EvaluateParams, final: UnderstandingRun, base: UnderstandingRun) -> dict[str, float]:
    return compare(final.outcomes, base.outcomes, BASE, params.bootstrap_samples, params.seed)


def _stored(folder: Path | None, outcomes: Outcomes) -> tuple[Outcomes, set[str]]:
    """The champion's stored outcomes that cover the candidate's documents, and the entries they do not cover."""
    found: Outcomes = {}
    missing = set()
    for name, by_lang in outcomes.items():
        for lang, ours in by_lang.items():
            theirs = read_outcomes(folder / "final", name, lang) if folder else None
            if theirs is None or not same_documents(ours, theirs):
                missing.add(name)
            else:
                found.setdefault(name, {})[lang] = theirs
    for name in missing:
        found.pop(name, None)
    return found, missing


def against_champion(params: EvaluateParams, register: RegisterParams, final: UnderstandingRun, tracking_uri: str,
                     root: Path, resolve: Callable[[str], Path]) -> tuple[dict[str, Any], list[str]]:
    """The candidate against the champion on every entry: (metrics, notes). No champion, or an unreachable registry,
    is a note (the gate then decides what that means), never a failed evaluation."""
    import mlflow
    from botocore.exceptions import BotoCoreError, ClientError
    from mlflow.exceptions import MlflowException
    from transformers import AutoTokenizer

    from bayling.evaluate.engines import LazyModel
    from bayling.models.champion import champion_model, champion_predictions

    if not params.compare_with_champion or not final.outcomes:
        return {}, []
    mlflow.set_tracking_uri(tracking_uri)
    notes: list[str] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            found = champion_predictions(register.model_name, register.champion_alias, Path(tmp) / "predictions")
            if found is None:
                return {}, []  # the translation comparison already says there is no champion
            version, folder = found
            theirs, missing = _stored(folder / OUTCOMES_FOLDER if folder else None, final.outcomes)
            if missing:
                local = champion_model(register.model_name, version, Path(tmp) / "model")
                tokenizer = AutoTokenizer.from_pretrained(local)
                # the champion's files were just downloaded here: scored on local weights, whatever evaluate.engine is
                local_params = params.model_copy(update={"engine": "hf"})
                again = score_model(local_params, "champion", local, LazyModel(local, params.precision), tokenizer, root,
                                    resolve, missing)
                theirs.update(again.outcomes)
                notes.append(f"champion v{version}'s stored understanding outcomes do not cover {', '.join(sorted(missing))}: "
                             "scored its registered model on them")
            metrics: dict[str, Any] = {"champion_version": int(version)}
            metrics.update(compare(final.outcomes, theirs, CHAMPION, params.bootstrap_samples, params.seed))
            return metrics, notes
    except (MlflowException, OSError, BotoCoreError, ClientError) as exc:
        return {}, [f"champion comparison of understanding tasks skipped: {type(exc).__name__}: {exc}"]
