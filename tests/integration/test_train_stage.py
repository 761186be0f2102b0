"""The train stage as DVC runs it: crash-safe resume after kill -9, and multi-process training on CPU."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration


def stage(project: Path, name: str, env=None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"stages.{name}"], cwd=project, capture_output=True, text=True,
                          env=env or dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{project}/mlflow.db"), **kw)


def set_params(project: Path, section: str, **values) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params[section].update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))


@pytest.fixture(scope="module")
def tokenized_project(repo_root: Path, tmp_path_factory) -> Path:
    """A project with a tiny base model and tokenized sample data, ready for the train stage."""
    project = tmp_path_factory.mktemp("train") / "project"
    for name in ("bayling", "stages", "flows", "data/sample", "infra"):
        shutil.copytree(repo_root / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(repo_root / "params.yaml", project / "params.yaml")
    set_params(project, "base_model", source="tiny-random")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["fetch"]["sources"][0]["max_rows"] = 60
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))
    set_params(project, "train", max_steps=12, save_steps=2, save_total_limit=3, keep_checkpoints=True, per_device_batch_size=8,
               logging_steps=1, learning_rate=1e-3, torch_threads=1, log_system_metrics=False)
    for name in ("base_model", "fetch", "synthesize", "tokenize"):
        result = stage(project, name)
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


def test_killed_run_resumes_to_the_same_weights(tokenized_project: Path, tmp_path: Path):
    straight = copy_of(tokenized_project, tmp_path, "straight")
    result = stage(straight, "train")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((straight / "reports/train/metrics.json").read_text())["steps"] == 12

    crashed = copy_of(tokenized_project, tmp_path, "crashed")
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{crashed}/mlflow.db")
    proc = subprocess.Popen([sys.executable, "-m", "stages.train"], cwd=crashed, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = crashed / "models/checkpoints/checkpoint-4/COMPLETE"
    deadline = time.monotonic() + 300
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "training finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (crashed / "models/final").exists()
    # a checkpoint whose marker never got written must be discarded, not resumed from
    newest = max((crashed / "models/checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    (newest / "COMPLETE").unlink(missing_ok=True)
    resumed = stage(crashed, "train")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = json.loads((crashed / "reports/train/metrics.json").read_text())
    assert metrics["steps"] == 12 and 2 <= metrics["resumed_from_step"] < int(newest.name.split("-")[1])
    assert f"removed {newest.name}" in resumed.stderr
    a, b = weights(straight), weights(crashed)
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    kept = sorted(int(p.name.split("-")[1]) for p in (crashed / "models/checkpoints").glob("checkpoint-*"))
    assert kept == [8, 10, 12]  # save_total_limit=3
    again = stage(crashed, "train")  # a forced re-run of a finished training lands on the same weights
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((crashed / "reports/train/metrics.json").read_text())["steps"] == 12
    c = weights(crashed)
    assert max((a[k] - c[k]).abs().max().item() for k in a) <= 1e-6


@pytest.mark.parametrize("zero", ["zero2", "zero3"])
def test_deepspeed_two_cpu_ranks_export_a_complete_model(tokenized_project: Path, tmp_path: Path, zero: str):
    from transformers import AutoModelForCausalLM

    project = copy_of(tokenized_project, tmp_path, zero)
    set_params(project, "train", num_gpus=2, deepspeed=zero, max_steps=4, save_steps=4)
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{project}/mlflow.db",
               TORCH_EXTENSIONS_DIR=str(Path(os.environ.get("TORCH_EXTENSIONS_DIR", tmp_path / "ext"))))
    result = stage(project, "train", env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "launching 2 processes" in result.stderr
    metrics = json.loads((project / "reports/train/metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["world_size"] == 2
    exported = AutoModelForCausalLM.from_pretrained(project / "models/final")
    base = AutoModelForCausalLM.from_pretrained(project / "models/base")
    assert sum(p.numel() for p in exported.parameters()) == sum(p.numel() for p in base.parameters())
    assert (project / "models/final/model.safetensors").stat().st_size > 0.9 * (project / "models/base/model.safetensors").stat().st_size
    changed = max((a - b).abs().max().item() for a, b in zip(exported.parameters(), base.parameters()))
    assert changed > 0  # trained weights, not an empty or untouched shell


def test_lora_exports_merged_weights(tokenized_project: Path, tmp_path: Path):
    from transformers import AutoModelForCausalLM

    project = copy_of(tokenized_project, tmp_path, "lora")
    set_params(
        project,
        "train",
        method="lora",
        max_steps=3,
        save_steps=3,
        lora={"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"},
    )
    result = stage(project, "train")
    assert result.returncode == 0, result.stderr[-3000:]
    files = {p.name for p in (project / "models/final").iterdir()}
    assert "adapter_config.json" not in files and "model.safetensors" in files
    merged = AutoModelForCausalLM.from_pretrained(project / "models/final")
    base = AutoModelForCausalLM.from_pretrained(project / "models/base")
    assert sum(p.numel() for p in merged.parameters()) == sum(p.numel() for p in base.parameters())
    assert max((a - b).abs().max().item() for a, b in zip(merged.parameters(), base.parameters())) > 0
