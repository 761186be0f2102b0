"""The train stage as DVC runs it: crash-safe resume after kill -9, and multi-process training on CPU."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from train_projects import copy_of, kill_after, set_params, stage, tokenized, weights

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tokenized_project(repo_root: Path, tmp_path_factory) -> Path:
    """A project with a tiny base model and tokenized sample data, ready for the train stage."""
    return tokenized(repo_root, tmp_path_factory.mktemp("train") / "project", 60)


def test_killed_run_resumes_to_the_same_weights(tokenized_project: Path, tmp_path: Path):
    straight = copy_of(tokenized_project, tmp_path, "straight")
    result = stage(straight, "train")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((straight / "reports/train/metrics.json").read_text())["steps"] == 12

    crashed = copy_of(tokenized_project, tmp_path, "crashed")
    kill_after(crashed, "checkpoint-4", wait_s=300)
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
    # what the steps drew: replayed from the sampler, so a resumed run reports the rows of the straight run
    drawn = json.loads((straight / "reports/train/drawn.json").read_text())
    assert drawn["steps"] == 12 and drawn == json.loads((crashed / "reports/train/drawn.json").read_text())
    composition = json.loads((straight / "reports/tokenize/composition.json").read_text())
    assert {row["cell"] for row in drawn["drawn"]} <= {row["cell"] for row in composition["train"]["kept"]}
    assert 0 < sum(row["supervised_tokens"] for row in drawn["drawn"])


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


@pytest.fixture(scope="module")
def one_node_of_two(tokenized_project: Path, tmp_path_factory) -> dict[str, Path]:
    """The reference for the two-node tests: one launch of two ranks, once per precision (built on first use)."""
    return {}


def _one_node_of_two(runs: dict[str, Path], tokenized_project: Path, tmp_path_factory, precision: str) -> Path:
    if precision not in runs:
        single = copy_of(tokenized_project, tmp_path_factory.mktemp(f"one-node-{precision}"), "single")
        set_params(single, "train", num_gpus=2, num_nodes=1, max_steps=4, save_steps=100, precision=precision)
        result = stage(single, "train", timeout=900)
        assert result.returncode == 0, result.stderr[-4000:]
        runs[precision] = single
    return runs[precision]


def _largest_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.mark.parametrize("rendezvous, precision", [("static", "fp32"), ("c10d", "fp32"), ("static", "bf16")])
def test_two_nodes_of_one_rank_train_as_one_node_of_two(tokenized_project: Path, one_node_of_two, tmp_path_factory, tmp_path: Path,
                                                        rendezvous: str, precision: str):
    """Two separate launches, as two machines would start them, each in its own checkout (its own disk), with
    num_nodes 2 and the rendezvous on 127.0.0.1. Given NODE_RANK 0 and 1 (static rendezvous), rank 0 runs on
    node 0; without it (elastic c10d), torchrun numbers the nodes itself. Either way exactly one process
    logs and exports, and what it exports equals a one-node two-rank run.

    In fp32 the two topologies agree to 1e-5 on every CPU. In bf16 (what `precision: auto` picks on an
    AVX512-BF16 or AMX CPU) an AMX CPU's kernels ended the two 6.7e-4 apart (issue 24), so there the claim is
    that the topology costs no more than bf16 itself: the two-node bf16 weights lie no further from the
    one-node bf16 weights than those lie from the one-node fp32 weights."""
    import sqlite3

    from servers import free_port

    single = _one_node_of_two(one_node_of_two, tokenized_project, tmp_path_factory, precision)
    nodes = [copy_of(tokenized_project, tmp_path, f"node{rank}") for rank in range(2)]
    port = free_port()
    procs = []
    for rank, node in enumerate(nodes):
        set_params(node, "train", num_gpus=1, num_nodes=2, max_steps=4, save_steps=100, precision=precision)
        env = {k: v for k, v in os.environ.items() if k not in ("NODE_RANK", "RANK")}
        env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), JOB_ID=f"two-nodes-{port}", MLFLOW_TRACKING_URI=f"sqlite:///{node}/mlflow.db")
        if rendezvous == "static":
            env["NODE_RANK"] = str(rank)
        procs.append(subprocess.Popen([sys.executable, "-m", "stages.train"], cwd=node, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outputs = [proc.communicate(timeout=900) for proc in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-4000:]
        assert "--nnodes 2" in err
    if rendezvous == "static":
        assert "--node_rank 1 --master_addr 127.0.0.1" in outputs[1][1]
    else:
        assert "--rdzv_backend c10d --rdzv_endpoint 127.0.0.1" in outputs[1][1]

    def runs(project: Path) -> int:
        if not (project / "mlflow.db").exists():
            return 0
        with sqlite3.connect(project / "mlflow.db") as db:
            return db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]

    exported = [node for node in nodes if (node / "models/final/model.safetensors").is_file()]
    assert len(exported) == 1 and sum(runs(node) for node in nodes) == 1
    (main_node,) = exported
    if rendezvous == "static":
        assert main_node == nodes[0]
    other = nodes[1 - nodes.index(main_node)]
    assert runs(main_node) == 1 and not (other / "reports/train/metrics.json").exists()
    metrics = json.loads((main_node / "reports/train/metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["world_size"] == 2

    topology = _largest_difference(weights(single), weights(main_node))
    if precision == "fp32":
        assert topology <= 1e-5
    else:
        fp32 = _one_node_of_two(one_node_of_two, tokenized_project, tmp_path_factory, "fp32")
        precision_cost = _largest_difference(weights(single), weights(fp32))
        assert precision_cost > 1e-4  # bf16 did train in bf16: otherwise the bound below would be no bound
        assert topology <= precision_cost, (topology, precision_cost)


def test_epochs_set_the_step_count_from_the_tokenized_rows(tokenized_project: Path, tmp_path: Path):
    from datasets import load_from_disk

    project = copy_of(tokenized_project, tmp_path, "epochs")
    set_params(project, "train", epochs=0.5, max_steps=1, per_device_batch_size=8, save_steps=100)
    rows = len(load_from_disk(str(project / "data/tokenized"))["train"])
    result = stage(project, "train", timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    expected = math.ceil(math.ceil(rows / 8) / 2)  # half of the epoch's micro-batches, rounded up
    metrics = json.loads((project / "reports/train/metrics.json").read_text())
    assert metrics["steps"] == expected > 1 and f"0.5 epochs over {rows} rows: {expected} steps" in result.stderr
