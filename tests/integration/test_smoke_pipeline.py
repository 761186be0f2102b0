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
        [sys.executable, "-m", "tools.smoke", "--dest", str(dest)], cwd=repo_root, env=env, capture_output=True, text=True
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
    assert any((dest / "reports/eval/predictions/final/heldout").glob("*.jsonl"))
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
                out |= corpus.get(source_id, {source_id})  # a general chat's source is the chat itself
        return out

    assert segments("heldout") and not (segments("heldout") & segments("train"))


def test_final_model_loads_and_metrics_show_before_and_after(smoke_run):
    dest, _, _ = smoke_run
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(dest / "models/final")
    tokenizer = AutoTokenizer.from_pretrained(dest / "models/final")
    assert tokenizer.chat_template and model.config.model_type == "llama"
    metrics = json.loads((dest / "reports/eval/metrics.json").read_text())
    for model in ("base", "final", "delta"):
        assert {f"heldout.avg.{model}.{m}" for m in ("bleu", "chrf", "chrf_pp")} <= set(metrics)
    assert "heldout.eng_Latn-fra_Latn.final.chrf_pp" in metrics
    assert "tok:zh" in metrics["signature.zho_Hans.bleu"]
    assert "tok:13a" in metrics["signature.eng_Latn.bleu"]
    assert any("nothing to compare with" in note for note in metrics["notes"])
    assert any("COMET skipped" in note for note in metrics["notes"])
    html = (dest / "reports/eval/report.html").read_text()
    assert "<h1>BayLing evaluation report</h1>" in html and "data:image/png;base64," in html


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


def test_full_evaluation_against_champion_references_xcopa_and_judge(smoke_run, mlflow_uri, shared_data, flores_dir, teacher_server):
    """Everything evaluate can do, configured at once: WMT and FLORES sets with a reference system,
    significance against the champion (its stored predictions, and its registered model for new segments), XCOPA,
    BayLing-80 with an LLM judge."""
    import mlflow

    dest, _, env = smoke_run
    client = mlflow.MlflowClient(mlflow_uri)
    first = min(client.search_model_versions("name = 'bayling-smoke'"), key=lambda v: int(v.version))
    client.set_registered_model_alias("bayling-smoke", "champion", first.version)
    bench = shared_data / "bayling" / "translation_benchmark"
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["evaluate"].update(
        {
            "test_sets": [
                {"name": "heldout", "kind": "heldout", "directions": "all", "max_segments": 2},
                {
                    "name": "wmt22-zh-en",
                    "kind": "wmt",
                    "direction": "zho_Hans-eng_Latn",
                    "src": str(shared_data / "wmt22/zh-en/src.txt"),
                    "refs": [str(shared_data / "wmt22/zh-en/refA.txt")],
                    "max_segments": 6,
                    "reference_systems": {"gpt-4": {"zho_Hans-eng_Latn": str(bench / "gpt-4/zh-en.hypo")}},
                },
                {
                    "name": "flores-swh",  # not the smoke profile's "flores": the champion has none of its outputs
                    "kind": "flores",
                    "dir": str(flores_dir / "devtest"),
                    "directions": ["eng_Latn-swh_Latn"],
                    "max_segments": 4,
                },
            ],
            "xcopa": {"dir": str(shared_data / "mc/xcopa/data"), "languages": ["sw", "zh"], "split": "val", "max_items": 10},
            "instructions": {
                "paths": [str(shared_data / "bayling/data/BayLing-80/BayLing-80.multiturn.en.jsonl")],
                "max_questions": 3,
                "max_new_tokens": 6,
                "judge": {
                    "enabled": True,
                    "base_url": teacher_server["base_url"],
                    "model": teacher_server["model"],
                    "max_tokens": 16,
                    "max_retries": 1,
                },
            },
        }
    )
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))
    repro = dvc(dest, env, "repro", "evaluate")
    assert repro.returncode == 0, repro.stdout[-3000:] + repro.stderr[-3000:]
    metrics = json.loads((dest / "reports/eval/metrics.json").read_text())
    assert metrics["champion_version"] == int(first.version)
    assert 0 < metrics["heldout.avg.final.chrf"] + 1 and "heldout.eng_Latn-fra_Latn.p_vs_champion.bleu" in metrics
    assert 0 <= metrics["heldout.eng_Latn-fra_Latn.p_vs_champion.chrf"] <= 1
    # the champion never saw the WMT and FLORES segments: its registered model translated them for the comparison
    assert metrics["champion_regenerated_segments"] == 6 + 4
    assert "wmt22-zh-en.zho_Hans-eng_Latn.p_vs_champion.chrf" in metrics and "flores-swh.eng_Latn-swh_Latn.champion.chrf" in metrics
    assert metrics["wmt22-zh-en.zho_Hans-eng_Latn.gpt-4.bleu"] > 10  # GPT-4 on its first six segments
    assert "wmt22-zh-en.avg.ratio_vs_gpt-4.chrf" in metrics and "flores-swh.eng_Latn-swh_Latn.final.chrf_pp" in metrics
    assert {"xcopa.sw.final.accuracy", "xcopa.zh.base.accuracy", "xcopa.avg.final.accuracy"} <= set(metrics)
    judged = sum(metrics[f"instructions.judge.{k}"] for k in ("win", "loss", "tie", "error"))
    assert judged == 3
    reviews = [json.loads(line) for line in (dest / "reports/eval/predictions/instructions/reviews.jsonl").read_text().splitlines()]
    assert len(reviews) == 3 and {r["outcome"] for r in reviews} <= {"WIN", "LOSS", "TIE", "ERROR"}
    answers = [json.loads(line) for line in (dest / "reports/eval/predictions/instructions/final.jsonl").read_text().splitlines()]
    assert [len(a["text"]) for a in answers] == [2, 2, 2]
    rows = (dest / "reports/eval/per_language.csv").read_text().splitlines()
    assert rows[0].startswith("test_set,direction,src_lang,tgt_lang,final_bleu") and any(r.startswith("flores-swh,") for r in rows)
