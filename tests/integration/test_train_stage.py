"""The train stage as DVC runs it: crash-safe resume after kill -9, and multi-process training on CPU."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import run_stage_here

pytestmark = pytest.mark.integration


def stage(project: Path, name: str, env=None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"stages.{name}"], cwd=project, capture_output=True, text=True,
                          env=env or dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{project}/mlflow.db"), **kw)


def set_params(project: Path, section: str, **values) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params[section].update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))


def _tokenized(repo_root: Path, project: Path, corpus_rows: int, general_chats: bool = True) -> Path:
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


@pytest.fixture(scope="module")
def tokenized_project(repo_root: Path, tmp_path_factory) -> Path:
    """A project with a tiny base model and tokenized sample data, ready for the train stage."""
    return _tokenized(repo_root, tmp_path_factory.mktemp("train") / "project", 60)


@pytest.fixture(scope="module")
def small_project(repo_root: Path, tmp_path_factory) -> Path:
    """The same with a third of the data, so that a short run crosses epochs."""
    return _tokenized(repo_root, tmp_path_factory.mktemp("train-small") / "project", 20, general_chats=False)


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


def _kill_after(project: Path, checkpoint: str) -> None:
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{project}/mlflow.db")
    proc = subprocess.Popen([sys.executable, "-m", "stages.train"], cwd=project, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = project / "models/checkpoints" / checkpoint / "COMPLETE"
    deadline = time.monotonic() + 600
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "training finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


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
    _kill_after(runs["crashed"], "checkpoint-6")
    resumed = stage(runs["crashed"], "train")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((runs["crashed"] / "reports/train/metrics.json").read_text())["resumed_from_step"] >= steps_per_epoch
    a, b = weights(runs["straight"]), weights(runs["crashed"])
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


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
def eight_packed_rows(tokenizer, tmp_path_factory) -> Path:
    from datasets import Dataset
    from helpers import encode

    from bayling.tokenize.packing import best_fit_decreasing, pack_rows

    chats = [[{"role": "user", "content": f"Provide the French translation for this sentence: line {i} " + "mot " * (i % 7)},
              {"role": "assistant", "content": "Bonjour " * (1 + i % 5) + f"ligne {i}."}] for i in range(24)]
    encoded = encode(tokenizer, chats)
    rows = pack_rows([(e.input_ids, e.labels) for e in encoded], best_fit_decreasing([len(e) for e in encoded], 180))[:8]
    assert len(rows) == 8
    out = tmp_path_factory.mktemp("eight") / "data"
    Dataset.from_list([{"input_ids": r.input_ids, "labels": r.labels, "position_ids": r.position_ids} for r in rows]).save_to_disk(str(out))
    return out


METHODS = ("full", "lora")


def _one_step(tiny_model_dir: Path, data: Path, out: Path, zero: str, methods: tuple[str, ...]) -> dict[str, dict]:
    """Step 1 of each method, one after the other in one launch: {method: {"loss", "grads"}}."""
    import torch

    script = Path(__file__).with_name("distributed_step.py")
    common = ["--model", str(tiny_model_dir), "--data", str(data), "--out", str(out), "--zero", zero, "--method", *methods]
    if zero == "none":
        command = [sys.executable, str(script), *common, "--batch", "8"]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script), *common,
                   "--batch", "4"]
    env = dict(os.environ, OMP_NUM_THREADS="1", TORCH_EXTENSIONS_DIR=os.environ.get("TORCH_EXTENSIONS_DIR", str(out.parent / "ext")))
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return {method: torch.load(out / f"{method}.pt") for method in methods}


@pytest.fixture(scope="module")
def one_steps(tiny_model_dir, eight_packed_rows, tmp_path_factory) -> dict[str, dict[str, dict]]:
    """{zero: {method: step 1}} for one process and ZeRO-2/3 on 2 ranks. One process and ZeRO-2 take both methods in
    one launch each; ZeRO-3 needs a launch per method, because its model-construction state outlives the first
    trainer (LoRA after full in one ZeRO-3 process got gradients 0.17 away from the single process's)."""
    work = tmp_path_factory.mktemp("one-step")
    steps = {zero: _one_step(tiny_model_dir, eight_packed_rows, work / zero, zero, METHODS) for zero in ("none", "zero2")}
    steps["zero3"] = {m: _one_step(tiny_model_dir, eight_packed_rows, work / f"zero3-{m}", "zero3", (m,))[m] for m in METHODS}
    return steps


@pytest.mark.parametrize("method", METHODS)
def test_zero2_and_zero3_step_equals_the_single_process_step(one_steps, method):
    """The supervised-positions-only head under ZeRO-2 and ZeRO-3 on 2 ranks: step 1's loss within 1e-5 and every
    gradient within 1e-5 (absolute) of one process taking the same 8 rows as one batch."""
    single = one_steps["none"][method]
    nonzero = [k for k, g in single["grads"].items() if g.abs().sum() > 0]
    # every weight gets a gradient in full fine-tuning; under LoRA only B does at step 1 (B starts at zero, so A's is zero)
    assert nonzero == list(single["grads"]) if method == "full" else nonzero and all("lora_B" in k for k in nonzero)
    for zero in ("zero2", "zero3"):
        sharded = one_steps[zero][method]
        assert sharded["loss"] == pytest.approx(single["loss"], abs=1e-5), zero
        assert sharded["grads"].keys() == single["grads"].keys(), zero
        worst = max((sharded["grads"][k].reshape(g.shape) - g).abs().max().item() for k, g in single["grads"].items())
        assert worst < 1e-5, (zero, worst)


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
