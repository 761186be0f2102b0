"""The whole pipeline on the smoke profile, as `make smoke` runs it, against a real MLflow server."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

CONTRACT = [
    "data/raw/corpus.jsonl",
    "data/raw/manifest.json",
    "data/synth/train.jsonl",
    "data/synth/heldout.jsonl",
    "data/synth/card.json",
    "data/tokenized/dataset_dict.json",
    "data/tokenized/fingerprint.json",
    "models/final/config.json",
    "models/final/model.safetensors",
    "models/final/tokenizer.json",
    "models/final/chat_template.jinja",
    "reports/eval/metrics.json",
    "reports/eval/per_language.csv",
    "reports/register.json",
]


@pytest.fixture(scope="module")
def smoke_run(repo_root: Path, mlflow_uri: str, tmp_path_factory):
    dest = tmp_path_factory.mktemp("smoke") / "repo"
    env = dict(os.environ, MLFLOW_TRACKING_URI=mlflow_uri)
    result = subprocess.run(
        [sys.executable, "-m", "flows.smoke", "--dest", str(dest)], cwd=repo_root, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return dest, result, env


def dvc(dest: Path, env, *args: str) -> subprocess.CompletedProcess:
    path_env = dict(env, PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}")
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=dest, env=path_env, capture_output=True, text=True)


def test_data_contract_is_complete(smoke_run):
    dest, result, _ = smoke_run
    for rel in CONTRACT:
        assert (dest / rel).is_file(), rel
    assert any((dest / "reports/eval/predictions/final").glob("*.jsonl"))
    assert "registered model: bayling-smoke version" in result.stdout
    from datasets import load_from_disk

    data = load_from_disk(str(dest / "data/tokenized"))
    row = data["train"][0]
    assert set(row) >= {"input_ids", "labels", "attention_mask"}
    assert -100 in row["labels"] and any(t != -100 for t in row["labels"])


def test_heldout_split_shares_no_segment_with_train(smoke_run):
    dest, _, _ = smoke_run
    corpus = {}
    for line in (dest / "data/raw/corpus.jsonl").read_text().splitlines():
        row = json.loads(line)
        corpus[row["id"]] = set(row["texts"].values())

    def segments(split):
        out = set()
        for line in (dest / f"data/synth/{split}.jsonl").read_text().splitlines():
            for source_id in json.loads(line)["meta"]["source_ids"]:
                out |= corpus[source_id]
        return out

    assert segments("heldout") and not (segments("heldout") & segments("train"))


def test_final_model_loads_and_metrics_show_before_and_after(smoke_run):
    dest, _, _ = smoke_run
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(dest / "models/final")
    tokenizer = AutoTokenizer.from_pretrained(dest / "models/final")
    assert tokenizer.chat_template and model.config.model_type == "llama"
    metrics = json.loads((dest / "reports/eval/metrics.json").read_text())
    assert {"base", "final", "delta", "signatures"} <= set(metrics)
    assert {"bleu", "chrf", "chrf_pp"} <= set(metrics["final"]["avg"])
    assert "tok:zh" in metrics["signatures"]["zho_Hans"]["bleu"]
    assert "tok:13a" in metrics["signatures"]["eng_Latn"]["bleu"]


def test_registry_holds_a_candidate_with_lineage(smoke_run, mlflow_uri):
    dest, _, _ = smoke_run
    import mlflow

    client = mlflow.MlflowClient(mlflow_uri)
    registered = json.loads((dest / "reports/register.json").read_text())
    version = client.get_model_version_by_alias("bayling-smoke", "candidate")
    assert version.version == registered["version"]
    lock = yaml.safe_load((dest / "dvc.lock").read_text())
    raw_md5 = next(o["md5"] for o in lock["stages"]["fetch"]["outs"] if o["path"] == "data/raw")
    assert version.tags["dvc.data/raw.md5"] == raw_md5
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=dest, capture_output=True, text=True).stdout.strip()
    assert version.tags["git_commit"] == commit
    assert version.tags["params.train.max_steps"] == "4"
    run = client.get_run(registered["run_id"])
    parent_id = run.data.tags.get("mlflow.parentRunId")
    assert parent_id, "register's run should hang under the flow's parent run"
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    assert {c.data.tags["pipeline.stage"] for c in children} >= {"train", "evaluate", "register"}


def test_dvc_is_up_to_date_and_an_evaluate_param_reruns_only_evaluate_and_register(smoke_run):
    dest, _, env = smoke_run
    status = dvc(dest, env, "status")
    assert status.returncode == 0 and "Data and pipelines are up to date" in status.stdout, status.stdout + status.stderr
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["evaluate"]["max_new_tokens"] = 6
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    before = json.loads((dest / "reports/register.json").read_text())
    repro = dvc(dest, env, "repro")
    assert repro.returncode == 0, repro.stdout[-3000:] + repro.stderr[-3000:]
    ran = {line.split("'")[1] for line in repro.stdout.splitlines() if line.startswith("Running stage")}
    assert ran == {"evaluate", "register"}
    after = json.loads((dest / "reports/register.json").read_text())
    assert after["version"] == before["version"] and after["created"] is False


def test_changing_the_chat_template_reruns_tokenize_and_everything_downstream(smoke_run):
    dest, _, env = smoke_run
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["tokenize"]["template"] = "bayling-v1"
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    repro = dvc(dest, env, "repro")
    assert repro.returncode == 0, repro.stdout[-3000:] + repro.stderr[-3000:]
    ran = {line.split("'")[1] for line in repro.stdout.splitlines() if line.startswith("Running stage")}
    assert ran == {"tokenize", "train", "evaluate", "register"}
    from transformers import AutoTokenizer

    exported = AutoTokenizer.from_pretrained(dest / "models/final")
    rendered = exported.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert rendered.endswith("### Instruction:\nHi\n### Response:\n")
