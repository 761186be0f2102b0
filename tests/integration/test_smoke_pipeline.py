"""The whole pipeline on the smoke profile, as `make smoke` runs it, against a real MLflow server."""

import json
import os
import subprocess
import sys
from html import escape as html_escape
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
    assert "tok:zh" in metrics["signature.heldout.zho_Hans.bleu"]
    assert "tok:13a" in metrics["signature.flores.eng_Latn.bleu"]
    assert any("nothing to compare with" in note for note in metrics["notes"])
    assert any("COMET skipped" in note for note in metrics["notes"])
    html = (dest / "reports/eval/report.html").read_text()
    assert "<h1>BayLing evaluation report</h1>" in html and "data:image/png;base64," in html


def test_the_smoke_profile_runs_one_lm_eval_task_end_to_end(smoke_run, mlflow_uri):
    """lm-eval's xcopa_sw on the shipped sample (profiles/smoke.yaml), Hub off: into metrics.json with each document's
    outcome, the paired test against the base model, per_language.csv, the report and the stage's MLflow run."""
    import mlflow

    dest, _, _ = smoke_run
    metrics = json.loads((dest / "reports/eval/metrics.json").read_text())
    stored = dest / "reports/eval/predictions/understanding/final/xcopa/sw.jsonl"
    outcomes = [json.loads(line) for line in stored.read_text().splitlines()]
    assert [o["doc_id"] for o in outcomes] == list(range(10)) and {o["task"] for o in outcomes} == {"xcopa_sw"}
    for metric in ("acc", "acc_norm"):  # the score is the mean of the documents' outcomes, and the average is the one language
        assert metrics[f"xcopa.sw.final.{metric}"] == round(sum(o["scores"][metric] for o in outcomes) / 10, 4)
        assert metrics[f"xcopa.avg.final.{metric}"] == metrics[f"xcopa.sw.final.{metric}"]
        assert metrics[f"xcopa.sw.delta.{metric}"] == round(metrics[f"xcopa.sw.final.{metric}"] - metrics[f"xcopa.sw.base.{metric}"], 4)
        assert 0 <= metrics[f"xcopa.sw.p_vs_base.{metric}"] <= 1
    assert metrics["xcopa.sw.items"] == 10
    rows = (dest / "reports/eval/per_language.csv").read_text().splitlines()
    header = rows[0].split(",")
    xcopa = dict(zip(header, next(r for r in rows if r.startswith("xcopa,sw,")).split(",")))
    assert float(xcopa["final_acc"]) == metrics["xcopa.sw.final.acc"] and xcopa["final_bleu"] == ""
    html = (dest / "reports/eval/report.html").read_text()
    assert '<h2>Understanding</h2><table class="understanding">' in html and "<td>xcopa</td><td>sw</td>" in html
    run_id = json.loads((dest / "reports/eval/run.json").read_text())["run_id"]
    logged = mlflow.MlflowClient(mlflow_uri).get_run(run_id).data
    assert logged.metrics["xcopa.sw.final.acc"] == metrics["xcopa.sw.final.acc"] and "xcopa.sw.p_vs_base.acc_norm" in logged.metrics
    assert logged.params["evaluate.understanding"] == "xcopa"


def test_review_compares_with_base_without_a_champion_in_report_json_and_mlflow_tables(smoke_run, mlflow_uri):
    """No champion yet: every direction is reviewed against the base model's outputs, in review.json, report.html and
    the register run's MLflow tables. The smoke models answer every prompt with a newline (empty outputs), so no
    segment moves and the review must say so instead of listing any; the last test makes them differ."""
    import mlflow

    dest, _, _ = smoke_run
    review = json.loads((dest / "reports/eval/review.json").read_text("utf-8"))
    metrics = json.loads((dest / "reports/eval/metrics.json").read_text())
    assert review["k"] == 5 and review["champion_version"] is None
    reviewed = {(d["test_set"], d["direction"]) for d in review["directions"]}
    assert reviewed == {(k.split(".")[0], k.split(".")[1]) for k in metrics if k.endswith(".final.chrf_pp") and ".avg." not in k}
    assert {d["comparator_label"] for d in review["directions"]} == {"vs base (no champion)"}
    flores = next(d for d in review["directions"] if d["test_set"] == "flores" and d["direction"] == "eng_Latn-swh_Latn")
    assert flores["scores"]["candidate"]["chrf_pp"] == metrics["flores.eng_Latn-swh_Latn.final.chrf_pp"]
    assert flores["scores"]["base"]["bleu"] == metrics["flores.eng_Latn-swh_Latn.base.bleu"] and flores["scores"]["champion"] is None
    assert flores["segments"] == 2 and flores["p_vs_champion"] is None
    moved = [s for d in review["directions"] for s in d["regressed"] + d["improved"]]
    assert moved == []  # identical (empty) outputs: a zero change is neither a regression nor an improvement

    html = (dest / "reports/eval/report.html").read_text("utf-8")
    section = html[html.index('<section id="review">'):]
    section = section[:section.index("</section>")]
    assert "<h2>Review per direction</h2>" in section
    assert section.count('<table class="segments" data-kind="regressed">') == len(review["directions"])
    assert section.count('<table class="segments" data-kind="improved">') == len(review["directions"])
    assert section.count("no segment regressed vs base (no champion)") == len(review["directions"])
    assert "<h2>Per direction</h2>" in html and "<h2>Charts</h2>" in html

    run_id = json.loads((dest / "reports/register.json").read_text())["run_id"]
    client = mlflow.MlflowClient(mlflow_uri)
    assert {a.path for a in client.list_artifacts(run_id, "review")} == {"review/directions.json", "review/review.json"}
    directions = mlflow.MlflowClient(mlflow_uri).get_run(run_id).data.tags["mlflow.loggedArtifacts"]
    assert {"path": "review/directions.json", "type": "table"} in json.loads(directions)


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


def test_the_model_card_goes_with_the_model_into_the_registry_and_dvc_ignores_it(smoke_run, mlflow_uri, tmp_path):
    """models/final/README.md is a Hugging Face card of the registered version: in the version's own files, in the
    register run's artifacts, as the version's description; writing it into train's output leaves DVC up to date."""
    import mlflow
    from huggingface_hub import ModelCard

    dest, _, env = smoke_run
    registered = json.loads((dest / "reports/register.json").read_text())
    card = ModelCard.load(dest / "models/final/README.md")
    metrics = json.loads((dest / "reports/eval/metrics.json").read_text())
    assert card.data.language == ["en", "fr", "sw", "zh"] and card.data.license
    assert {(r.dataset_config, r.metric_name, r.metric_value) for r in card.data.eval_results} >= {
        ("eng_Latn-swh_Latn", "chrF++", metrics["flores.eng_Latn-swh_Latn.final.chrf_pp"])}
    assert f"`bayling-smoke` version {registered['version']} (alias `candidate`)" in card.text
    client = mlflow.MlflowClient(mlflow_uri)
    version = client.get_model_version("bayling-smoke", registered["version"])
    assert version.description.startswith("# bayling-smoke\n") and "\n## Training data\n" in version.description
    assert len(version.description) <= 5000 and card.text.lstrip().startswith(version.description.split("\n…")[0].rstrip())
    logged = mlflow.artifacts.download_artifacts(run_id=registered["run_id"], artifact_path="model_card/README.md",
                                                 dst_path=str(tmp_path / "run"), tracking_uri=mlflow_uri)
    assert ModelCard.load(logged).content == card.content
    model_files = client.get_model_version_download_uri("bayling-smoke", registered["version"])
    in_model = mlflow.artifacts.download_artifacts(artifact_uri=f"{model_files}/artifacts/final/README.md",
                                                   dst_path=str(tmp_path / "model"), tracking_uri=mlflow_uri)
    assert ModelCard.load(in_model).data.eval_results == card.data.eval_results
    status = dvc(dest, env, "status")
    assert "Data and pipelines are up to date" in status.stdout, status.stdout + status.stderr


def test_report_and_registered_version_render_offline_in_a_browser(smoke_run, mlflow_uri, chromium_executable, tmp_path):
    """What a reviewer opens, rendered by headless Chromium: the report (charts decoded, the per-direction table, the
    review with its segment tables) and the MLflow UI page of the registered version (its model card). Neither page
    may fetch anything beyond loopback. Screenshots go to the test's folder and to $BAYLING_SCREENSHOT_DIR."""
    from browser import browser_session, recorded_page, save_screenshot, screenshot_dirs
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    dest, _, _ = smoke_run
    version = json.loads((dest / "reports/register.json").read_text())["version"]
    shots = screenshot_dirs(tmp_path)
    problems = []
    with browser_session(chromium_executable) as browser:
        with recorded_page(browser) as report:
            page = report.page
            page.goto((dest / "reports/eval/report.html").as_uri(), wait_until="load")
            save_screenshot(page, "report.png", shots, full_page=True)
            charts = page.locator("figure img")
            if charts.count() == 0:
                problems.append("the report has no chart images")
            for chart in charts.all():
                name = chart.get_attribute("alt")
                box = chart.bounding_box()
                if not (chart.is_visible() and box and box["width"] > 100 and box["height"] > 50):
                    problems.append(f"chart {name} is not visible (box {box})")
                if not chart.evaluate("img => img.complete && img.naturalWidth > 0"):
                    problems.append(f"chart {name} did not decode")
            per_direction = page.locator("h2:text-is('Per direction') + table")
            if not (per_direction.count() == 1 and per_direction.is_visible() and per_direction.locator("tr").count() >= 2):
                problems.append("the per-direction table is missing, hidden or empty")
            review = page.locator("section#review")
            if not (review.count() == 1 and review.is_visible()):
                problems.append('the review <section id="review"> is missing or hidden')
            elif not any(table.is_visible() for table in review.locator("table.segments").all()):
                problems.append("the review shows no table.segments")
        with recorded_page(browser) as ui:
            page = ui.page
            page.goto(f"{mlflow_uri}/#/models/bayling-smoke/versions/{version}")
            page.get_by_text(f"Version {version}", exact=True).wait_for(timeout=60_000)
            card = page.get_by_role("heading", name="Training data")
            try:
                card.first.wait_for(timeout=20_000)
            except PlaywrightTimeout:
                problems.append(f"the version page shows no model card (no 'Training data' heading) for version {version}")
            assistant_close = page.get_by_role("button", name="Close", exact=True)
            if assistant_close.count() == 1 and assistant_close.is_visible():
                assistant_close.click()  # MLflow's assistant panel opens on first load and covers a third of the page
            save_screenshot(page, "mlflow-version.png", shots, full_page=False)
    outside = report.outside_requests + ui.outside_requests
    if outside:
        problems.append(f"requests beyond loopback: {outside}")
    assert not problems, "\n".join(problems) + f"\nscreenshots: {shots}"


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
    assert ran == {"tokenize", "audit", "train", "evaluate", "register"}
    from transformers import AutoTokenizer

    exported = AutoTokenizer.from_pretrained(dest / "models/final")
    rendered = exported.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert rendered.endswith("### Instruction:\nHi\n### Response:\n")


def test_full_evaluation_against_champion_references_xcopa_and_judge(smoke_run, mlflow_uri, shared_data, flores_dir, teacher_server):
    """Everything evaluate can do, configured at once: WMT and FLORES sets with a reference system, BayLing's
    lexically constrained sets (both directions, both instruction languages) with their term usage rates,
    significance against the champion (its stored predictions, and its registered model for new segments), XCOPA,
    BayLing-80 with an LLM judge."""
    import mlflow

    dest, _, env = smoke_run
    client = mlflow.MlflowClient(mlflow_uri)
    first = min(client.search_model_versions("name = 'bayling-smoke'"), key=lambda v: int(v.version))
    client.set_registered_model_alias("bayling-smoke", "champion", first.version)
    bench = shared_data / "bayling" / "translation_benchmark"
    params = yaml.safe_load((dest / "params.yaml").read_text())
    # decontamination names its sets among these (synthesize.decontamination.against), so the set it names stays
    flores = [t for t in params["evaluate"]["test_sets"] if t["name"] in params["synthesize"]["decontamination"]["against"]]
    params["evaluate"].update(
        {
            "test_sets": [
                {"name": "heldout", "kind": "heldout", "directions": "all", "max_segments": 2},
                *flores,
                {
                    "name": "wmt22-zh-en",
                    "kind": "wmt",
                    "direction": "zho_Hans-eng_Latn",
                    "src": str(shared_data / "wmt22/zh-en/src.txt"),
                    "refs": [str(shared_data / "wmt22/zh-en/refA.txt")],
                    "max_segments": 6,
                    "reference_systems": {"gpt-4": {"zho_Hans-eng_Latn": str(bench / "gpt-4/zh-en.hypo")}},
                },
                *({"name": f"constrained-{pair}", "kind": "constrained", "direction": direction, "max_segments": 3,
                   "src": str(shared_data / f"bayling/data/constrained_translation/constraints.{pair}.{pair[-2:]}.jsonl"),
                   "instruction_language": language}
                  for pair, direction, language in (("en-zh", "eng_Latn-zho_Hans", "en"), ("zh-en", "zho_Hans-eng_Latn", "zh"))),
                {
                    "name": "flores-swh",  # not the smoke profile's "flores": the champion has none of its outputs
                    "kind": "flores",
                    "dir": str(flores_dir / "devtest"),
                    "directions": ["eng_Latn-swh_Latn"],
                    "max_segments": 4,
                },
            ],
            # the native engine beside the smoke profile's lm-eval task: the champion has no outcomes for it
            "xcopa": {"name": "xcopa_native", "dir": str(shared_data / "mc/xcopa/data"), "languages": ["sw", "zh"], "split": "val",
                      "max_items": 10},
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
    assert metrics["champion_regenerated_segments"] == 6 + 3 + 3 + 4
    # the constrained sets score like the others, and with a term usage rate per direction for both models
    for name, direction in (("constrained-en-zh", "eng_Latn-zho_Hans"), ("constrained-zh-en", "zho_Hans-eng_Latn")):
        for model in ("final", "base"):
            for where, metric in ((w, m) for w in (direction, "avg") for m in ("term_usage", "term_usage_items")):
                assert 0 <= metrics[f"{name}.{where}.{model}.{metric}"] <= 1, (name, where, model, metric)
            assert f"{name}.{direction}.{model}.chrf_pp" in metrics
        assert f"{name}.{direction}.delta.term_usage" in metrics and metrics[f"{name}.{direction}.segments"] == 3
        assert 0 <= metrics[f"{name}.{direction}.champion.term_usage"] <= 1  # from the champion's re-translations
        rows = [json.loads(line) for line in (dest / f"reports/eval/predictions/final/{name}/{direction}.jsonl").read_text().splitlines()]
        assert len(rows) == 3 and all(len(r["terms_found"]) == len(r["terms"]) > 0 for r in rows)
    assert "wmt22-zh-en.zho_Hans-eng_Latn.p_vs_champion.chrf" in metrics and "flores-swh.eng_Latn-swh_Latn.champion.chrf" in metrics
    # the review ranks segments against the champion's outputs, stored and re-translated alike; the predictions folder
    # (a DVC out) holds only what this evaluation's models wrote, so it does not depend on the registry's state
    review = json.loads((dest / "reports/eval/review.json").read_text("utf-8"))
    assert {d["comparator_label"] for d in review["directions"]} == {f"vs champion v{first.version}"}
    wmt = next(d for d in review["directions"] if d["test_set"] == "wmt22-zh-en")
    assert wmt["p_vs_champion"]["chrf"] == metrics["wmt22-zh-en.zho_Hans-eng_Latn.p_vs_champion.chrf"]
    assert wmt["scores"]["champion"]["bleu"] == metrics["wmt22-zh-en.zho_Hans-eng_Latn.champion.bleu"]
    assert not (dest / "reports/eval/predictions/champion").exists()
    assert metrics["wmt22-zh-en.zho_Hans-eng_Latn.gpt-4.bleu"] > 10  # GPT-4 on its first six segments
    assert "wmt22-zh-en.avg.ratio_vs_gpt-4.chrf" in metrics and "flores-swh.eng_Latn-swh_Latn.final.chrf_pp" in metrics
    assert {"xcopa_native.sw.final.acc", "xcopa_native.zh.base.acc", "xcopa_native.avg.final.acc_norm"} <= set(metrics)
    # understanding against the champion: lm-eval's xcopa_sw from the outcomes stored with it, the native set (new since)
    # by scoring its registered model again
    assert 0 <= metrics["xcopa.sw.p_vs_champion.acc"] <= 1 and 0 <= metrics["xcopa_native.zh.p_vs_champion.acc_norm"] <= 1
    assert any("do not cover xcopa_native: scored its registered model" in n for n in metrics["notes"])
    assert not any("do not cover xcopa:" in n or "do not cover xcopa," in n for n in metrics["notes"])
    judged = sum(metrics[f"instructions.judge.{k}"] for k in ("win", "loss", "tie", "error"))
    assert judged == 3
    reviews = [json.loads(line) for line in (dest / "reports/eval/predictions/instructions/reviews.jsonl").read_text().splitlines()]
    assert len(reviews) == 3 and {r["outcome"] for r in reviews} <= {"WIN", "LOSS", "TIE", "ERROR"}
    answers = [json.loads(line) for line in (dest / "reports/eval/predictions/instructions/final.jsonl").read_text().splitlines()]
    assert [len(a["text"]) for a in answers] == [2, 2, 2]
    rows = (dest / "reports/eval/per_language.csv").read_text().splitlines()
    assert rows[0].startswith("test_set,direction,src_lang,tgt_lang,final_bleu") and any(r.startswith("flores-swh,") for r in rows)
    assert "final_term_usage" in rows[0].split(",") and any(r.startswith("constrained-zh-en,zho_Hans-eng_Latn,") for r in rows)


def test_review_shows_where_a_candidate_got_worse_than_base(smoke_run, repo_root, mlflow_uri, tmp_path):
    """A base model initialised wider babbles words instead of newlines (as the teacher fixture's does), and so does
    the candidate trained from it: their outputs differ, and the review must show, against the base model (champion
    comparison off), the segments where the candidate got worse, in review.json, report.html and the MLflow tables."""
    import mlflow

    dest, _, env = smoke_run
    smoke = yaml.safe_load((repo_root / "profiles/smoke.yaml").read_text())
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["base_model"]["tiny"]["initializer_range"] = 0.2
    params["evaluate"] = {**params["evaluate"], "test_sets": smoke["evaluate"]["test_sets"], "compare_with_champion": False}
    params["evaluate"].pop("xcopa", None)
    params["evaluate"].pop("instructions", None)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))
    repro = dvc(dest, env, "repro", "register")
    assert repro.returncode == 0, repro.stdout[-3000:] + repro.stderr[-3000:]

    review = json.loads((dest / "reports/eval/review.json").read_text("utf-8"))
    assert {d["comparator_label"] for d in review["directions"]} == {"vs base (champion comparison off)"}
    base_outputs = {}
    for path in (dest / "reports/eval/predictions/base").rglob("*.jsonl"):
        base_outputs.update({row["id"]: row["hypothesis"] for row in map(json.loads, path.read_text("utf-8").splitlines())})
    regressed = [s for d in review["directions"] for s in d["regressed"]]
    moved = regressed + [s for d in review["directions"] for s in d["improved"]]
    assert regressed, "the babbling candidate should translate some segment worse than its base"
    for segment in moved:  # the comparator is the base model's own output, and the change is what the scores say
        assert segment["comparator_output"] == base_outputs[segment["id"]] and segment["delta"] != 0
        assert segment["delta"] == round(segment["candidate_chrf_pp"] - segment["comparator_chrf_pp"], 4)
    assert all(s["delta"] < 0 for s in regressed) and all(len(d["regressed"]) <= 5 for d in review["directions"])

    html = (dest / "reports/eval/report.html").read_text("utf-8")
    section = html[html.index('<section id="review">'):]
    tables = [t.split("</table>")[0] for t in section.split('<table class="segments" data-kind="regressed">')[1:]]
    assert any(regressed[0]["id"] in t and html_escape(regressed[0]["comparator_output"]) in t for t in tables)

    run_id = json.loads((dest / "reports/register.json").read_text())["run_id"]
    client = mlflow.MlflowClient(mlflow_uri)
    assert {a.path for a in client.list_artifacts(run_id, "review")} == {"review/directions.json", "review/segments.json",
                                                                          "review/review.json"}
    table = json.loads(Path(client.download_artifacts(run_id, "review/segments.json", str(tmp_path))).read_text())
    rows = [dict(zip(table["columns"], row)) for row in table["data"]]
    assert len(rows) == len(moved) and {r["compared_with"] for r in rows} == {"vs base (champion comparison off)"}
    assert sorted(r["id"] for r in rows if r["change"] == "regressed") == sorted(s["id"] for s in regressed)
