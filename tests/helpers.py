"""Small helpers several test modules share (importable because conftest puts tests/ on sys.path)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Encoded:
    input_ids: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.input_ids)


def encode(tokenizer: Any, conversations: Sequence[Sequence[dict[str, str]]], *, end_of_turn: str | None = None,
           loss_on: str = "all") -> list[Encoded]:
    """Token ids and assistant-only labels, the way the tokenize stage makes them (no length limit)."""
    from bayling.tokenize.chat import Renderer, labels_for, tokenize_batch
    from bayling.tokenize.templates import compile_template

    end = end_of_turn or tokenizer.eos_token
    renderer = Renderer(tokenizer, end, compile_template(tokenizer, end))
    return [Encoded(t.input_ids, labels_for(t, loss_on)) for t in tokenize_batch(tokenizer, renderer, conversations)]


@dataclass(frozen=True)
class StageRun:
    """What a stage run left: the same three fields as subprocess.CompletedProcess, so a test reads either."""

    returncode: int
    stdout: str
    stderr: str


def give_base_tokenizer(project: Path, tokenizer_dir: Path) -> None:
    """models/base holding the SmolLM2 tokenizer alone: what synthesize reads to measure general chats, without
    running the base_model stage."""
    import shutil

    dest = project / "models" / "base"
    dest.mkdir(parents=True, exist_ok=True)
    for path in tokenizer_dir.iterdir():
        shutil.copy2(path, dest / path.name)


def run_stage_here(project: Path, name: str, *args: str, env: dict[str, str] | None = None) -> StageRun:
    """`python -m stages.<name> *args` in `project`, run in this interpreter with runpy, as torchtune's recipe
    tests run their recipes: the stage's module code runs afresh, as `python -m` runs it, but torch, transformers
    and the rest are imported once per test process instead of once per stage. For tests that want a stage's
    outputs or messages; a test about the process itself (a kill, Ctrl-C, a launcher, several ranks) runs it as one.

    The environment (BAYLING_ROOT set to the project), working directory, argv, root logging, MLflow's tracking URI
    and torch's thread count are set for the run and put back after it. The stage's log lines and anything it
    writes to stderr land in `stderr`, an uncaught exception as its traceback with return code 1, like Python's."""
    import os
    import runpy

    environment = dict(env if env is not None else os.environ, BAYLING_ROOT=str(project))
    return _run_here(lambda: runpy.run_module(f"stages.{name}", run_name="__main__", alter_sys=True),
                     [str(project / "stages" / f"{name}.py"), *args], project, environment, name)


def run_script_here(script: Path, *args: str, cwd: Path) -> StageRun:
    """`python <script> *args` from `cwd`, run in this interpreter with runpy (see `run_stage_here`)."""
    import os
    import runpy

    return _run_here(lambda: runpy.run_path(str(script), run_name="__main__"), [str(script), *args], cwd, dict(os.environ),
                     script.stem)


def _run_here(run: Any, argv: list[str], cwd: Path, env: dict[str, str], log_name: str) -> StageRun:
    import contextlib
    import io
    import logging
    import os
    import sys
    import traceback

    saved_env, saved_cwd, saved_argv = dict(os.environ), os.getcwd(), sys.argv[:]
    mlflow_uri = _mlflow_uri_setting()
    torch_threads = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None
    out, err = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s [{log_name}] %(message)s"))
    root_logger = logging.getLogger()
    saved_level = root_logger.level
    code = 0
    try:
        os.environ.clear()
        os.environ.update(env)
        os.chdir(cwd)
        sys.argv = argv
        root_logger.addHandler(handler)
        root_logger.setLevel(logging.INFO)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                run()
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
            except Exception:  # noqa: BLE001 - what the interpreter would print on its way out
                traceback.print_exc(file=err)
                code = 1
    finally:
        root_logger.removeHandler(handler)
        root_logger.setLevel(saved_level)
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        _restore_mlflow_uri(mlflow_uri)
        if torch_threads is not None:
            sys.modules["torch"].set_num_threads(torch_threads)
    return StageRun(code, out.getvalue(), err.getvalue())


def _mlflow_uri_setting() -> Any:
    import sys

    if "mlflow" not in sys.modules:
        return None
    from mlflow.tracking._tracking_service import utils

    return ("set", utils._tracking_uri)


def _restore_mlflow_uri(saved: Any) -> None:
    """A stage calls mlflow.set_tracking_uri; the next test in this process must not inherit the project's store."""
    import sys

    if "mlflow" not in sys.modules:
        return
    from mlflow.tracking._tracking_service import utils

    utils._tracking_uri = saved[1] if saved else None


class ManualClock:
    """A clock the test moves by hand (`clock.now += seconds`), for code that takes a `clock` callable."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
