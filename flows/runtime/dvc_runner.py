"""DVC commands as both flows run them: streamed into the Prefect run log, stage progress events taken out into
an artifact per stage, Ctrl-C passed on (`INTERRUPTION`), and the failures worth another attempt told apart."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.states import State

from bayling.core import progress
from bayling.core.errors import PipelineError
from bayling.core.paths import project_root
from flows.runtime.interruption import INTERRUPTION
from flows.runtime.stage_watch import PrefectProgressArtifact, StageWatch

ROOT = project_root()
# Failures worth another attempt, as the tools print them: DVC's held locks, dropped or refused
# connections, timeouts and throttling from S3 or the tracking server. Matched as whole messages, so a
# stage that merely logs "503 segments" or "timed out waiting for a reviewer" is not retried.
TRANSIENT_ERRORS = re.compile("|".join([
    r"Unable to acquire lock\. Most likely another DVC process",
    r"'[^']+' is busy, it is being blocked by",
    r"database is locked",
    r"Connection reset by peer",
    r"Connection refused",
    r"Could not connect to the endpoint URL",
    r"EndpointConnectionError",
    r"Max retries exceeded with url",
    r"Read timed out\.",
    r"(Connect|Read) timeout on endpoint URL",
    r"An error occurred \((SlowDown|InternalError|ServiceUnavailable|RequestTimeout|Throttling|50[0234])\) when calling",
    r"HTTP Error 50[234]",
    r"\b50[234] (Service Unavailable|Bad Gateway|Gateway Time-?out)\b",
]))
TAIL_LINES = 30  # of a failed command's output, in the failure's message
PROGRESS_BAR = re.compile(r"\d+%\|")
# DVC's git hints are meant for someone at a shell, not for an orchestrated run.
DVC_HINTS = ("To track the changes with git", "To enable auto staging", "dvc config core.autostage", "git add ", "Use `dvc push`")


def is_transient(message: str | None) -> bool:
    return TRANSIENT_ERRORS.search(message or "") is not None


def retry_transient(task, task_run, state) -> bool:  # type: ignore[no-untyped-def]
    """A task's retry_condition_fn: another attempt for a transient failure, none once Ctrl-C was pressed."""
    return is_transient(state.message) and not INTERRUPTION.requested


def stage_env(parent_run_id: str | None = None) -> dict[str, str]:
    """The environment DVC runs stage commands in: this interpreter's bin first, so `python` is ours, and
    this flow run's MLflow parent run, which the stages' own runs hang under."""
    from bayling.core.tracking import PARENT_RUN_ENV

    env = dict(os.environ)
    env.pop(PARENT_RUN_ENV, None)
    if parent_run_id:
        env[PARENT_RUN_ENV] = parent_run_id
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["BAYLING_ROOT"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"  # stage logs reach the flow's log as they happen
    env.setdefault("TQDM_DISABLE", "1")
    env.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    # Stages report progress as event lines, which dvc() turns into a Prefect progress artifact per stage.
    env[progress.MODE_ENV] = "off" if os.environ.get(progress.MODE_ENV) == "off" else "events"
    return env


def dvc(*args: str, log_lines: bool = True, parent_run_id: str | None = None, cwd: Path = ROOT,
        env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    """Run a DVC command in the project (or in `cwd` with `env`: flows.reproduce's work tree), streaming its
    output to the run log; returns (code, lines).

    For `repro --single-item STAGE`, the stage's progress events become the artifact progress-STAGE."""
    logger = get_run_logger()
    stage = args[args.index("--single-item") + 1] if args[:1] == ("repro",) and "--single-item" in args else None
    watch = StageWatch(stage, logger.info, PrefectProgressArtifact(stage) if stage else None)
    proc = subprocess.Popen([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env or stage_env(parent_run_id), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    INTERRUPTION.child = proc
    output: list[str] = []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            line = line.rstrip()
            if watch.feed(line):
                continue
            if line and not PROGRESS_BAR.search(line) and not line.lstrip().startswith(DVC_HINTS):
                output.append(line)
                if log_lines:
                    logger.info(line)
        code = proc.wait()
        watch.finish(succeeded=code == 0 and not INTERRUPTION.requested)
        return code, output
    finally:
        INTERRUPTION.child = None
        if proc.poll() is None:  # stopped at once: do not leave DVC holding its lock
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def task_result(state: State) -> Any:
    """What a task returned. A task hands a user error back as a failed state (raised, Prefect would log it with a
    traceback), which becomes that error again here; a crash re-raises its own exception."""
    from prefect.exceptions import FailedRun

    try:
        return state.result()
    except FailedRun:
        raise PipelineError(state.message or "failed") from None
