"""MLflow plumbing: where runs go, how stage runs hang under the pipeline's parent run, and logging that never kills a stage."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# The flow hands its parent run to the stage processes it starts through their environment: per flow
# run, never through a file two runs in one checkout would share.
PARENT_RUN_ENV = "BAYLING_PARENT_RUN_ID"
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value


def fail_fast() -> None:
    """An unreachable tracking server fails in seconds instead of after MLflow's multi-minute default
    retry budget. Call before MLflow makes its first request; explicit settings in the environment win."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")


def numeric_leaves(value: Any, prefix: str = "") -> dict[str, float]:
    """The numeric leaves of a nested report under dotted keys (MLflow metrics); booleans and NaN are left out."""
    if isinstance(value, dict):
        out: dict[str, float] = {}
        for key, item in value.items():
            out.update(numeric_leaves(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
        return {prefix: float(value)}
    return {}


def tracking_uri(root: Path) -> str:
    """MLFLOW_TRACKING_URI when set, otherwise a sqlite file in the project (gitignored)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(root / 'mlflow.db').resolve()}"


def configure(root: Path, experiment: str) -> str:
    """Point MLflow at the tracking store and make sure the experiment exists; return the experiment id."""
    import mlflow

    uri = tracking_uri(root)
    project_default = "MLFLOW_TRACKING_URI" not in os.environ
    mlflow.set_tracking_uri(uri)  # note: this also exports MLFLOW_TRACKING_URI
    client = mlflow.MlflowClient()
    existing = client.get_experiment_by_name(experiment)
    if existing is not None:
        mlflow.set_experiment(experiment_id=existing.experiment_id)
        return existing.experiment_id
    location = None
    if project_default:
        location = (root / "mlartifacts").resolve().as_uri()
    experiment_id = client.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def _active_parent() -> str | None:
    """The parent run named in the environment, if that run exists and is still running."""
    import mlflow

    run_id = os.environ.get(PARENT_RUN_ENV)
    if not run_id:
        return None
    try:
        run = mlflow.MlflowClient().get_run(run_id)
    except Exception:  # a run id from another tracking store
        log.warning("ignoring parent run %s from %s: not found in this tracking store", run_id, PARENT_RUN_ENV)
        return None
    return run_id if run.info.status == "RUNNING" else None


def stringify_params(params: dict[str, Any]) -> dict[str, str]:
    return {k[:250]: (str(v) if len(str(v)) <= MAX_PARAM_CHARS else str(v)[: MAX_PARAM_CHARS - 1] + "…") for k, v in params.items()}


def process_tags() -> dict[str, str]:
    """Where the process that owns a run lives, so that a later run can tell the process died: a kill -9, or a
    machine that went down, leaves the run RUNNING with nobody to end it."""
    import socket

    import psutil

    me = psutil.Process()
    return {"bayling.host": socket.gethostname(), "bayling.pid": str(me.pid), "bayling.pid_started": f"{me.create_time():.3f}"}


def _alive(pid: str, started: str) -> bool:
    import psutil

    try:
        return abs(psutil.Process(int(pid)).create_time() - float(started)) < 1.0  # not a later process given the same pid
    except psutil.AccessDenied:
        return True  # another user's live process: not ours to call dead
    except (psutil.Error, ValueError):
        return False


def close_orphaned_runs(client: Any, experiment_id: str) -> list[str]:
    """End as KILLED the runs of the experiment still RUNNING whose process, on this host, is gone, with a tag
    saying why; returns their ids. Runs of other hosts, and of live processes, are left alone."""
    import socket

    host = socket.gethostname()
    found = client.search_runs([experiment_id], filter_string=f"attributes.status = 'RUNNING' and tags.`bayling.host` = '{host}'",
                               max_results=1000)
    closed = []
    for run in found:
        tags = run.data.tags or {}
        if _alive(tags.get("bayling.pid", ""), tags.get("bayling.pid_started", "")):
            continue
        client.set_tag(run.info.run_id, "bayling.ended_by", f"a later run on {host}: process {tags.get('bayling.pid')} was gone")
        client.set_terminated(run.info.run_id, "KILLED")
        closed.append(run.info.run_id)
    return closed


@contextlib.contextmanager
def stage_run(
    root: Path, stage: str, experiment: str, tags: dict[str, str] | None = None, log_system_metrics: bool = False
) -> Iterator[Any]:
    """An MLflow run for one stage, a child of the pipeline's parent run when the flow started one."""
    import mlflow

    configure(root, experiment)
    parent = _active_parent()
    all_tags = {"pipeline.stage": stage, **process_tags(), **(tags or {})}
    with mlflow.start_run(run_name=stage, parent_run_id=parent, tags=all_tags, log_system_metrics=log_system_metrics or None) as run:
        yield run


@contextlib.contextmanager
def optional_stage_run(root: Path, stage: str, experiment: str, log_system_metrics: bool = False) -> Iterator[Any]:
    """Like stage_run, but yields None (and warns) when the tracking store can't be reached."""
    stack = contextlib.ExitStack()
    try:
        run = stack.enter_context(stage_run(root, stage, experiment, log_system_metrics=log_system_metrics))
    except Exception as exc:
        log.warning("MLflow is unreachable (%s); the %s stage continues without tracking", exc, stage)
        run = None
    try:
        yield run
    except BaseException:
        with contextlib.suppress(Exception):
            stack.__exit__(*sys.exc_info())
        raise
    else:
        try:
            stack.close()
        except Exception as exc:
            log.warning("MLflow failed while closing the %s run: %s", stage, exc)


@dataclass
class ResilientLogger:
    """Logs to the active MLflow run; a tracking outage is counted and reported, never raised.

    An inactive logger (no run: tracking unreachable, or a process other than rank 0) drops every call,
    so no MLflow call can start a stray run of its own.
    """

    active: bool = True
    failures: int = 0
    first_error: str | None = None
    dropped: list[str] = field(default_factory=list)

    def call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> None:
        """Run one tracking call `fn(*args, **kwargs)`; on failure count it under `what` and carry on."""
        if not self.active:
            return
        try:
            fn(*args, **kwargs)
        except Exception as exc:  # tracking must never take training down with it
            self.failures += 1
            self.dropped.append(what)
            if self.first_error is None:
                self.first_error = f"{type(exc).__name__}: {exc}"
                log.warning("MLflow logging failed (%s); continuing without it: %s", what, exc)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        import mlflow

        clean = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        if clean:
            self.call(f"metrics@{step}", mlflow.log_metrics, clean, step=step)

    def log_params(self, params: dict[str, Any]) -> None:
        import mlflow

        self.call("params", mlflow.log_params, stringify_params(params))

    def set_tags(self, tags: dict[str, Any]) -> None:
        import mlflow

        self.call("tags", mlflow.set_tags, {k: str(v) for k, v in tags.items()})

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        import mlflow

        if path.is_file():
            self.call(f"artifact {path.name}", mlflow.log_artifact, str(path), folder)

    def summary(self) -> str:
        if not self.failures:
            return "all tracking calls succeeded"
        return f"{self.failures} tracking calls failed (first: {self.first_error})"
