"""Projects for the train stage's tests: a tiny base model and tokenized sample data, ready to train, and the
ways those tests run and read the stage (importable because conftest puts tests/ on sys.path)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from helpers import run_stage_here


def stage(project: Path, name: str, env=None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"stages.{name}"], cwd=project, capture_output=True, text=True,
                          env=env or dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{project}/mlflow.db"), **kw)


def set_params(project: Path, section: str, **values) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params[section].update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))


def tokenized(repo_root: Path, project: Path, corpus_rows: int, general_chats: bool = True) -> Path:
    for name in ("bayling", "stages", "flows", "data/sample", "infra"):
        shutil.copytree(repo_root / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(repo_root / "params.yaml", project / "params.yaml")
    set_params(project, "base_model", source="tiny-random")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["fetch"]["sources"][0]["max_rows"] = corpus_rows
    if not general_chats:  # the shipped 600 general chats do not shrink with the corpus
        params["synthesize"]["general"]["sources"] = []
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))
    set_params(project, "train", max_steps=12, save_steps=2, save_total_limit=3, keep_checkpoints=True, per_device_batch_size=8,
               logging_steps=1, learning_rate=1e-3, torch_threads=1, log_system_metrics=False)
    for name in ("base_model", "fetch", "synthesize", "tokenize"):  # only their outputs matter here: run in this process
        result = run_stage_here(project, name, env=dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{project}/mlflow.db"))
        assert result.returncode == 0, result.stderr[-3000:]
    return project


def weights(project: Path):
    from safetensors.torch import load_file

    return load_file(str(project / "models/final/model.safetensors"))


def copy_of(project: Path, tmp_path: Path, name: str) -> Path:
    dest = tmp_path / name
    shutil.copytree(project, dest, ignore=shutil.ignore_patterns("models/checkpoints", "mlflow.db"))
    shutil.rmtree(dest / "models" / "checkpoints", ignore_errors=True)
    return dest


def kill_after(project: Path, checkpoint: str, wait_s: float = 600) -> None:
    """Start `stages.train` in `project` and kill -9 it once `checkpoint` is complete (up to `wait_s` seconds)."""
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{project}/mlflow.db")
    proc = subprocess.Popen([sys.executable, "-m", "stages.train"], cwd=project, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = project / "models/checkpoints" / checkpoint / "COMPLETE"
    deadline = time.monotonic() + wait_s
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "training finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


