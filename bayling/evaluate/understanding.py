"""Understanding benchmarks through lm-evaluation-harness, used as a library: any task or group lm-eval knows by
name (belebele_*, xnli_*, xstorycloze_*, xwinograd_*, pawsx_*, mgsm_direct_*, global_mmlu_*, include_base_44_*,
mmlu), run on the model under evaluation, with each document's outcome kept for the paired tests of the gate.

The model is lm-eval's own: `hf` (HFLM) on the weights already loaded in this process, or `local-completions`
against evaluate.server when evaluate.engine is openai (vLLM's completions endpoint gives the prompt log-probabilities
that log-likelihood tasks need). Tasks read local copies when an entry names an include_path: lm-eval's own task
YAMLs, the prompt and choices kept, pointed at local files (lm_eval_tasks/ holds XCOPA's); their relative paths
start from the entry's data_dir (the project root when not given), where lm-eval runs. With `offline` the Hub is off.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bayling.config.evaluate import EvaluateParams, UnderstandingTasks
from bayling.core.errors import PipelineError
from bayling.evaluate.outcomes import ItemOutcome, UnderstandingRun

log = logging.getLogger(__name__)
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def metric_key_part(metric: str) -> str:
    """An lm-eval metric as the last part of a metrics.json key: acc stays acc, "exact_match,flexible-extract" becomes
    exact_match_flexible-extract (MLflow takes no commas in a metric name)."""
    name, _, filter_name = metric.partition(",")
    return name if filter_name in ("", "none") else f"{name}_{filter_name}"


def _lm_eval_metric(metric: str) -> tuple[str, str]:
    name, _, filter_name = metric.partition(",")
    return name, filter_name or "none"


@contextlib.contextmanager
def offline_hub(enabled: bool) -> Iterator[None]:
    """The Hub off for datasets and huggingface_hub, in the environment and in the modules that read it at import."""
    if not enabled:
        yield
        return
    saved = {name: os.environ.get(name) for name in OFFLINE_VARIABLES}
    patched: list[tuple[Any, str, Any]] = []
    try:
        for name in OFFLINE_VARIABLES:
            os.environ[name] = "1"
        import datasets.config
        import huggingface_hub.constants

        for module, attr in ((datasets.config, "HF_HUB_OFFLINE"), (datasets.config, "HF_DATASETS_OFFLINE"),
                             (huggingface_hub.constants, "HF_HUB_OFFLINE")):
            if hasattr(module, attr):
                patched.append((module, attr, getattr(module, attr)))
                setattr(module, attr, True)
        yield
    finally:
        for module, attr, value in patched:
            setattr(module, attr, value)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def working_directory(path: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def local_lm(model: Any, tokenizer: Any, batch_size: int) -> Any:
    """lm-eval's HFLM on weights already in memory (the candidate's, or the base model's)."""
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)


def served_lm_args(params: EvaluateParams, label: str, model_dir: Path) -> dict[str, Any]:
    """lm-eval `local-completions` arguments for a model behind evaluate.server (as bayling/evaluate/engines.py names
    it there): the completions endpoint, the served name, the local tokenizer for lm-eval's own encoding, and the
    key from the variable evaluate.server.api_key_env names as a bearer header (local-completions sends no key else)."""
    server = params.server
    base_url = server.base_urls.get(label, server.base_url).rstrip("/")  # type: ignore[call-overload]
    args: dict[str, Any] = {"base_url": f"{base_url}/completions",
                            "model": server.models.get(label, str(model_dir.resolve())),  # type: ignore[call-overload]
                            "tokenizer_backend": "huggingface", "tokenizer": str(model_dir.resolve()),
                            "num_concurrent": server.max_concurrency or params.batch_size, "max_retries": server.max_retries,
                            "timeout": int(server.timeout_s)}
    key = os.environ.get(server.api_key_env) if server.api_key_env else None
    if key:
        args["header"] = {"Authorization": f"Bearer {key}"}
    return args


def served_lm(params: EvaluateParams, label: str, model_dir: Path) -> Any:
    from lm_eval.models.openai_completions import LocalCompletionsAPI

    return LocalCompletionsAPI(**served_lm_args(params, label, model_dir))


def _leaves(group_subtasks: dict[str, list[str]], name: str) -> list[str]:
    if name not in group_subtasks:
        return [name]
    return [leaf for child in group_subtasks[name] for leaf in _leaves(group_subtasks, child)]


def _score(results: dict[str, Any], group_subtasks: dict[str, list[str]], name: str, metric: str,
           sizes: dict[str, int]) -> float | None:
    """lm-eval's score of a task, or of a group; a group that does not aggregate this metric gets the size-weighted mean
    of its tasks' scores (lm-eval's own weight_by_size aggregation)."""
    value = results.get(name, {}).get(metric)
    if isinstance(value, (int, float)):
        return float(value)
    leaves = [(results.get(leaf, {}).get(metric), sizes.get(leaf, 0)) for leaf in _leaves(group_subtasks, name)]
    if not leaves or any(not isinstance(v, (int, float)) for v, _ in leaves) or not sum(n for _, n in leaves):
        return None
    return sum(float(v) * n for v, n in leaves) / sum(n for _, n in leaves)


def _outcomes(samples: list[dict[str, Any]], task: str, metrics: list[str]) -> list[ItemOutcome]:
    by_doc: dict[int, ItemOutcome] = {}
    for sample in samples:
        scores = {}
        for metric in metrics:
            name, filter_name = _lm_eval_metric(metric)
            if sample.get("filter", "none") == filter_name and name in sample:
                scores[metric_key_part(metric)] = float(sample[name])
        doc_id = int(sample["doc_id"])
        known = by_doc.get(doc_id)
        merged = {**(known.scores if known else {}), **scores}
        by_doc[doc_id] = ItemOutcome(task, doc_id, str(sample.get("doc_hash", "")), str(sample.get("prompt_hash", "")), merged)
    return [by_doc[d] for d in sorted(by_doc)]


@functools.lru_cache(maxsize=4)
def task_manager(include: str | None, defaults: bool = True) -> Any:
    """lm-eval's task index, built once per include_path: with its defaults it reads the ~14,000 task YAMLs lm-eval
    ships (16 s on a 2-core CPU); without them, only the include_path's."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=include, include_defaults=defaults)


def _manager_for(include: str | None, tasks: list[str]) -> Any:
    """The include_path's own index when it defines every task asked for, else lm-eval's whole index with it."""
    if include:
        local = task_manager(include, False)
        if all(task in local.all_tasks for task in tasks):
            return local
    return task_manager(include, True)


def run_tasks(spec: UnderstandingTasks, lm: Any, label: str, root: Path, seed: int = 0) -> UnderstandingRun:
    """One understanding entry on one model: lm-eval's scores keyed {name}.{lang}.{label}.{metric}, a size-weighted
    {name}.avg.{label}.{metric}, and each document's outcome."""
    import time

    import lm_eval

    languages = spec.languages()
    include = str((root / spec.include_path).resolve()) if spec.include_path else None
    started = time.perf_counter()
    data_dir = (root / spec.data_dir).resolve() if spec.data_dir else root
    if not data_dir.is_dir():
        raise PipelineError(f"evaluate.understanding '{spec.name}': data_dir {spec.data_dir} is not a folder")
    if include and not Path(include).is_dir():
        raise PipelineError(f"evaluate.understanding '{spec.name}': include_path {spec.include_path} is not a folder")
    with offline_hub(spec.offline), working_directory(data_dir):
        manager = _manager_for(include, list(languages.values()))
        unknown = [task for task in languages.values() if task not in manager.all_tasks]
        if unknown:
            where = f" or in {spec.include_path}" if spec.include_path else ""
            raise PipelineError(f"evaluate.understanding '{spec.name}': lm-eval {lm_eval.__version__} has no task or group "
                                f"{', '.join(unknown)}{where}")
        try:
            out = lm_eval.simple_evaluate(model=lm, tasks=list(languages.values()), num_fewshot=spec.num_fewshot,
                                          limit=spec.limit, task_manager=manager, log_samples=True, random_seed=seed,
                                          numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed,
                                          bootstrap_iters=0)
        except (FileNotFoundError, ConnectionError) as exc:
            hint = ("with offline: true each task must read local files (include_path)" if spec.offline
                    else "check the Hub is reachable, or point include_path at local copies")
            raise PipelineError(f"evaluate.understanding '{spec.name}': lm-eval could not read a task's data ({exc}); "
                                f"{hint}") from None
    if out is None:
        raise PipelineError(f"evaluate.understanding '{spec.name}': lm-eval returned no results")
    run = UnderstandingRun()
    results, groups, samples = out["results"], out.get("group_subtasks", {}), out.get("samples", {})
    sizes = {task: len(rows) for task, rows in samples.items()}
    totals: dict[str, float] = {}
    count = 0
    for lang, task in languages.items():
        outcomes = [o for leaf in _leaves(groups, task) for o in _outcomes(samples.get(leaf, []), leaf, spec.metrics)]
        run.outcomes.setdefault(spec.name, {})[lang] = outcomes
        for metric in spec.metrics:
            name, filter_name = _lm_eval_metric(metric)
            value = _score(results, groups, task, f"{name},{filter_name}", sizes)
            if value is None:
                raise PipelineError(f"evaluate.understanding '{spec.name}': lm-eval reports no '{metric}' for {task} "
                                    f"(it reports {', '.join(sorted(k for k in results.get(task, {}) if ',' in k)) or 'nothing'})")
            run.metrics[f"{spec.name}.{lang}.{label}.{metric_key_part(metric)}"] = round(value, 4)
            totals[metric] = totals.get(metric, 0.0) + value * len(outcomes)
        count += len(outcomes)
    if count:
        for metric, total in totals.items():
            run.metrics[f"{spec.name}.avg.{label}.{metric_key_part(metric)}"] = round(total / count, 4)
    run.seconds = time.perf_counter() - started
    run.items = count
    return run
