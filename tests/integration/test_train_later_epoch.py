"""The train stage killed (kill -9) in a later epoch resumes to the weights of a straight run: each epoch's order
depends on the seed and the epoch only, and LoRA dropout's RNG state is restored. Its own file (and project) so
that `make test` can run it beside the rest of the train stage's tests."""

import json
from pathlib import Path

import pytest
from train_projects import copy_of, kill_after, set_params, stage, tokenized, weights

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def small_project(repo_root: Path, tmp_path_factory) -> Path:
    """The same with a third of the data, so that a short run crosses epochs."""
    return tokenized(repo_root, tmp_path_factory.mktemp("train-small") / "project", 20, general_chats=False)


@pytest.mark.parametrize("method", ["full", "lora"])
def test_a_kill_in_a_later_epoch_resumes_to_the_same_weights(small_project: Path, tmp_path: Path, method: str):
    """Each epoch's order depends on the seed and the epoch only, and LoRA dropout's RNG state is restored."""
    train = {"max_steps": 10, "save_steps": 2, "per_device_batch_size": 32, "logging_steps": 1}
    if method == "lora":
        train.update(method="lora", learning_rate=5e-3, lora={"r": 4, "alpha": 8, "dropout": 0.2, "target_modules": "all-linear"})
    runs = {}
    for name in ("straight", "crashed"):
        runs[name] = copy_of(small_project, tmp_path, f"{method}-{name}")
        set_params(runs[name], "train", **train)
    rows = len(__import__("datasets").load_from_disk(str(runs["straight"] / "data/tokenized"))["train"])
    steps_per_epoch = -(-rows // 32)
    assert steps_per_epoch <= 5, rows  # checkpoint 6 lies in epoch 1 or later
    result = stage(runs["straight"], "train")
    assert result.returncode == 0, result.stderr[-3000:]
    kill_after(runs["crashed"], "checkpoint-6")
    resumed = stage(runs["crashed"], "train")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((runs["crashed"] / "reports/train/metrics.json").read_text())["resumed_from_step"] >= steps_per_epoch
    a, b = weights(runs["straight"]), weights(runs["crashed"])
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


