"""Operating the pipeline against real servers: moto_server as S3 (DVC remote and MLflow artifacts),
`mlflow server` with --artifacts-destination s3://, and `prefect server start`.

One smoke-profile project goes through a sequence of retrain runs, so the tests below run in file order
and build on each other: approve, skip when unchanged, reject, gate failure, MLflow outage during
register, `dvc pull` into a fresh clone, a crash mid-pipeline, and a scan for planted secrets.
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from servers import free_port, mlflow_server

pytestmark = pytest.mark.integration

BUCKET = "bayling-ops"
MODEL = "bayling-ops"
FLOW_TIMEOUT_S = 420
FIRST_RUN: dict[str, str] = {}  # the approved run's flow-run id, for the tests that look back at it


@dataclass
class Ops:
    project: Path
    env: dict[str, str]
    mlflow_uri: str
    s3_endpoint: str
    prefect_api: str
    planted: list[str]
    logs: Path

    def client(self):  # type: ignore[no-untyped-def]
        import mlflow

        return mlflow.MlflowClient(self.mlflow_uri)


def run(ops: Ops, *args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=cwd or ops.project, env=env or ops.env, capture_output=True, text=True, timeout=timeout)


def start_flow(ops: Ops, name: str, *args: str) -> tuple[subprocess.Popen, Path]:
    log = ops.logs / f"{name}.log"
    with open(log, "w") as handle:
        proc = subprocess.Popen([sys.executable, "-m", "flows.retrain", *args], cwd=ops.project, env=ops.env,
                                stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, log


def finish(proc: subprocess.Popen, log: Path, expect: int = 0) -> str:
    try:
        code = proc.wait(timeout=FLOW_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(f"flow did not finish in {FLOW_TIMEOUT_S}s:\n{log.read_text()[-6000:]}") from None
    text = log.read_text()
    assert code == expect, f"exit {code}, expected {expect}:\n{text[-6000:]}"
    return text


def paused_run(ops: Ops, proc: subprocess.Popen, log: Path, key: str) -> dict:
    """Wait until the flow run pauses with this key (the same lookup tools.approve makes)."""
    deadline = time.monotonic() + FLOW_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"flow ended (exit {proc.returncode}) instead of pausing:\n{log.read_text()[-6000:]}")
        runs = httpx.post(f"{ops.prefect_api}/flow_runs/filter",
                          json={"flow_runs": {"state": {"type": {"any_": ["PAUSED"]}}}}, timeout=10).json()
        for found in runs:
            if found["state"]["state_details"].get("pause_key") == key:
                return found
        time.sleep(1)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError(f"no run paused with key {key}:\n{log.read_text()[-6000:]}")


def approve(ops: Ops, version: str, decision: str, reviewer: str, note: str) -> str:
    result = run(ops, sys.executable, "-m", "tools.approve", version, "--decision", decision, "--by", reviewer, "--note", note)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def champion(ops: Ops) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return ops.client().get_model_version_by_alias(MODEL, "champion").version
    except MlflowException:
        return None


def register_json(ops: Ops) -> dict:
    return json.loads((ops.project / "reports" / "register.json").read_text())


def dvc(ops: Ops, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(ops.env, PATH=f"{Path(sys.executable).parent}{os.pathsep}{ops.env['PATH']}")
    return run(ops, sys.executable, "-m", "dvc", *args, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def ops(repo_root: Path, s3_endpoint: str, prefect_api: str, tmp_path_factory: pytest.TempPathFactory):
    import boto3

    from bayling.config.overrides import apply_overrides
    from tools.smoke import make_copy

    work = tmp_path_factory.mktemp("ops")
    planted = ["planted-aws-" + secrets.token_hex(12), "planted-teacher-" + secrets.token_hex(12)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_API", "AWS_"))}
    env.update(
        AWS_ACCESS_KEY_ID="ops-tester", AWS_SECRET_ACCESS_KEY=planted[0], AWS_DEFAULT_REGION="us-east-1",
        TEACHER_API_KEY=planted[1], MLFLOW_S3_ENDPOINT_URL=s3_endpoint, PREFECT_API_URL=prefect_api,
        PREFECT_HOME=str(work / "prefect-home"), BAYLING_APPROVAL_POLL_S="1", BAYLING_SYNC_RETRY_DELAYS="1,2",
    )
    boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="ops-tester", aws_secret_access_key=planted[0],
                 region_name="us-east-1").create_bucket(Bucket=BUCKET)
    with mlflow_server(work / "mlflow", artifacts_destination=f"s3://{BUCKET}/mlflow", env=env) as uri:
        env["MLFLOW_TRACKING_URI"] = uri
        project = work / "project"
        make_copy(repo_root, project, repo_root / "profiles" / "smoke.yaml")
        apply_overrides(project / "params.yaml", {
            "register.model_name": MODEL,
            "register.approval.timeout_s": 900,
            # tiny models trained for 4 steps differ by noise; the drop rule has its own tests
            "register.gate.max_drop_vs_champion.points": 100.0,
            # a wider initialisation makes the tiny models babble words instead of newlines: their outputs differ,
            # so the review in the pause has segments that regressed against the champion to show
            "base_model.tiny.initializer_range": 0.2,
        })
        env["BAYLING_ROOT"] = str(project)
        ops = Ops(project, env, uri, s3_endpoint, prefect_api, planted, work)
        for args in (("remote", "add", "-d", "store", f"s3://{BUCKET}/dvc"), ("remote", "modify", "store", "endpointurl", s3_endpoint)):
            assert dvc(ops, *args).returncode == 0
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-qam", "ops settings"], cwd=project, check=True
        )
        yield ops


def test_approval_through_the_api_makes_the_candidate_champion(ops: Ops):
    proc, log = start_flow(ops, "1-approve")
    paused = paused_run(ops, proc, log, f"approval-{MODEL}-v1-1")
    FIRST_RUN["flow_run_id"] = paused["id"]
    description = httpx.get(f"{ops.prefect_api}/flow_runs/{paused['id']}/input/paused-approval-{MODEL}-v1-1-description", timeout=10).text
    assert "### Gate" in description and "| rule |" in description and "report.html" in description
    assert champion(ops) is None
    assert ops.client().get_model_version_by_alias(MODEL, "candidate").version == "1"

    said = approve(ops, "1", "approve", "tester", "looks fine")
    assert f"verified and applied approve by {getpass.getuser()} (unauthenticated); 'champion' now points to version 1" in said
    output = finish(proc, log)
    assert f"approve by {getpass.getuser()} (unauthenticated): champion moved" in output

    assert champion(ops) == "1"
    tags = ops.client().get_model_version(MODEL, "1").tags
    # no users on this server: the OS user decided, recorded as unauthenticated; --by is only a display name
    assert tags["decision"] == "approve" and tags["reviewed_by"] == getpass.getuser() and tags["note"] == "looks fine"
    assert tags["reviewer_display"] == "tester" and tags["reviewer_authenticated"] == "false"
    assert tags["flow_run_id"] == paused["id"] and tags["previous_champion"] == "none" and tags["reviewed_at"]
    assert tags["gate"] == "passed"
    gate = register_json(ops)["gate"]
    assert gate["passed"] and {r["rule"] for r in gate["rules"]} >= {"required_test_set", "max_drop_vs_champion"}

    # One parent run for the pipeline, tagged with the commit, the flow run and every DVC out.
    client = ops.client()
    experiment = client.get_experiment_by_name("bayling-pipeline")
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`pipeline.flow` = 'retrain'")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ops.project, capture_output=True, text=True).stdout.strip()
    assert parent.data.tags["git_commit"] == head and parent.data.tags["prefect.flow_run_id"] == paused["id"]
    lock_md5 = {k.removeprefix("dvc.").removesuffix(".md5"): v for k, v in parent.data.tags.items() if k.startswith("dvc.")}
    assert {"data/raw", "data/synth", "data/tokenized", "models/final"} <= set(lock_md5)
    children = client.search_runs([experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert {c.data.tags["pipeline.stage"] for c in children} == {"fetch", "synthesize", "tokenize", "audit", "train", "evaluate",
                                                                 "register"}  # the audit, within the tokenize step, logs its own
    # Pushed to the DVC remote: the model weights are in the bucket.
    cloud = dvc(ops, "status", "--cloud")
    assert cloud.returncode == 0 and "Cache and remote 'store' are in sync" in cloud.stdout, cloud.stdout + cloud.stderr


def test_each_stage_left_a_progress_artifact_at_100_and_the_log_no_raw_events(ops: Ops):
    from bayling.core.progress import EVENT_PREFIX
    from flows.runtime.stage_watch import artifact_key

    run_id = FIRST_RUN["flow_run_id"]
    found = httpx.post(f"{ops.prefect_api}/artifacts/filter", timeout=10, json={
        "artifacts": {"flow_run_id": {"any_": [run_id]}, "type": {"any_": ["progress"]}}}).json()
    stages = list(yaml.safe_load((ops.project / "dvc.yaml").read_text())["stages"])
    assert {"fetch", "synthesize", "tokenize", "train", "evaluate", "register"} <= set(stages)
    keys = [artifact["key"] for artifact in found]
    assert sorted(keys) == sorted(map(artifact_key, stages)), keys  # one per stage, each run by the flow
    assert all(artifact["data"] == 100 for artifact in found), [(a["key"], a["data"], a["description"]) for a in found]

    messages: list[str] = []
    while page := httpx.post(f"{ops.prefect_api}/logs/filter", timeout=10, json={
            "logs": {"flow_run_id": {"any_": [run_id]}}, "sort": "TIMESTAMP_ASC", "offset": len(messages), "limit": 200}).json():
        messages += [entry["message"] for entry in page]
    assert messages and not [m for m in messages if EVENT_PREFIX.strip() in m]
    assert EVENT_PREFIX.strip() not in (ops.logs / "1-approve.log").read_text()
    # a line every 10% instead: the long loops of each stage reached 100%
    for expected in ("synthesize:", "tokenize: tokenize train", "train:", "evaluate: generate"):
        assert any(m.startswith(f"{expected} 100% (") for m in messages), expected


def test_a_registered_version_reproduces_bit_for_bit_and_a_planted_change_names_its_stage(ops: Ops):
    """flows.reproduce on version 1: a fresh clone at its commit, its logged dvc.lock, `dvc pull` from the S3
    remote, every stage re-run. Then again from tokenize with one train param changed in the work tree."""
    status = ["git", "status", "--porcelain", "--untracked-files=no"]
    before = subprocess.run(status, cwd=ops.project, capture_output=True, text=True).stdout
    result = run(ops, sys.executable, "-m", "flows.reproduce", f"models:/{MODEL}/1", timeout=FLOW_TIMEOUT_S)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "reproduced bit for bit" in result.stdout, result.stdout[-4000:]
    assert "cached outputs of base_model, fetch, synthesize, tokenize, audit, train, evaluate match the record" in result.stdout
    assert not list((ops.project / ".cache" / "reproduce").iterdir())  # a bit-for-bit rebuild leaves no work tree
    client = ops.client()
    experiment = client.get_experiment_by_name("bayling-pipeline")
    (rebuilt,) = client.search_runs([experiment.experiment_id], "tags.`pipeline.flow` = 'reproduce'")
    assert rebuilt.data.tags["reproduced"] == "true" and rebuilt.data.tags["reproduces"] == f"models:/{MODEL}/1"

    # a change no re-run stage reads would never run: refused, and the clone (DVC credentials in it) goes
    unread = run(ops, sys.executable, "-m", "flows.reproduce", f"models:/{MODEL}/1", "--from", "evaluate",
                 "-S", "train.learning_rate=0.005", timeout=FLOW_TIMEOUT_S)
    assert unread.returncode == 2, unread.stdout[-4000:] + unread.stderr[-4000:]
    assert "-S train.learning_rate: read only by train, which this rebuild does not re-run (evaluate)" in unread.stderr
    assert not list((ops.project / ".cache" / "reproduce").iterdir())

    planted = run(ops, sys.executable, "-m", "flows.reproduce", f"models:/{MODEL}@champion", "--from", "tokenize",
                  "-S", "train.learning_rate=0.005", timeout=FLOW_TIMEOUT_S)
    assert planted.returncode == 1, planted.stdout[-4000:] + planted.stderr[-4000:]
    report = planted.stdout
    assert "the first stage whose output differs is 'train'" in report, report[-4000:]
    assert "identical before it: tokenize" in report
    assert "model.safetensors:" in report and "tensors changed" in report and "||Δ|| / ||W||" in report
    assert "planted overrides: train.learning_rate=0.005" in report
    (kept,) = list((ops.project / ".cache" / "reproduce").iterdir())
    assert (kept / "models" / "final" / "model.safetensors").exists()  # kept for a look at what differs
    assert subprocess.run(status, cwd=ops.project, capture_output=True, text=True).stdout == before  # the project's checkout is untouched


def test_a_run_with_nothing_changed_ends_early(ops: Ops):
    proc, log = start_flow(ops, "2-unchanged")
    output = finish(proc, log)
    assert "nothing to do: every source has the version the last fetch read" in output
    assert "dvc-repro-" not in output  # no stage was even asked
    runs = httpx.post(f"{ops.prefect_api}/flow_runs/filter", json={"sort": "END_TIME_DESC", "limit": 1}, timeout=10).json()
    assert runs[0]["state"]["name"] == "NothingToDo" and runs[0]["state"]["type"] == "COMPLETED"


def test_reject_leaves_the_champion_where_it_was(ops: Ops):
    proc, log = start_flow(ops, "3-reject", "-S", "train.learning_rate=0.002")
    paused = paused_run(ops, proc, log, f"approval-{MODEL}-v2-1")
    # the reviewer sees every direction against champion v1, with p-values, and the segments that got worse
    raw = httpx.get(f"{ops.prefect_api}/flow_runs/{paused['id']}/input/paused-approval-{MODEL}-v2-1-description", timeout=10).text
    description = json.loads(raw) if raw.startswith('"') else raw
    assert "### Per direction" in description and "| p chrF++ | p BLEU |" in description
    rows = [[c.strip() for c in line.strip("|").split(" | ")] for line in description.splitlines() if line.startswith("| heldout |")]
    assert rows and all(len(r) == 8 and all(c.replace(".", "").isdigit() for c in r[2:]) for r in rows), rows
    assert "most regressed vs champion v1 (sentence chrF++)" in description
    assert "| Δ chrF++ | source | reference | champion (chrF++) | candidate (chrF++) |" in description
    approve(ops, "2", "reject", "tester", "not better")
    output = finish(proc, log)
    assert f"reject by {getpass.getuser()} (unauthenticated): champion unchanged" in output
    assert champion(ops) == "1"
    tags = ops.client().get_model_version(MODEL, "2").tags
    assert tags["decision"] == "reject" and tags["previous_champion"] == "1" and tags["flow_run_id"] == paused["id"]
    # the override went into params.yaml, as `dvc exp run -S` does
    assert "learning_rate: 0.002" in (ops.project / "params.yaml").read_text()
    # evaluate compared the candidate with the champion's stored predictions
    metrics = json.loads((ops.project / "reports" / "eval" / "metrics.json").read_text())
    assert metrics["champion_version"] == 1 and any(".p_vs_champion." in k for k in metrics)


def test_a_failed_gate_proposes_nothing(ops: Ops):
    proc, log = start_flow(ops, "4-gate", "-S", "register.gate.min_scores={heldout.avg.final.chrf: 1000}")
    output = finish(proc, log)
    assert "gate failed" in output
    gate = register_json(ops)["gate"]
    (rule,) = [r for r in gate["rules"] if r["rule"] == "min_score"]
    assert not gate["passed"] and not rule["passed"] and rule["threshold"] == 1000 and rule["value"] < 1000
    # the same model files as version 2: no new version, and nothing moved
    assert len(ops.client().search_model_versions(f"name = '{MODEL}'")) == 2
    assert champion(ops) == "1" and ops.client().get_model_version_by_alias(MODEL, "candidate").version == "2"
    assert ops.client().get_model_version(MODEL, "2").tags["gate"] == "failed"


def test_mlflow_down_during_register_fails_clearly_then_registers_once(ops: Ops):
    report = ops.project / "reports" / "register.json"
    down = dict(ops.env, MLFLOW_TRACKING_URI=f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    ops_env, ops.env = ops.env, down
    try:
        failed = dvc(ops, "repro", "--force", "--single-item", "register")
    finally:
        ops.env = ops_env
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0 and "could not register the model with MLflow at http://127.0.0.1:" in output
    assert "Traceback" not in output and not report.exists()
    assert time.monotonic() - started < 120
    again = dvc(ops, "repro", "--single-item", "register")
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert "re-used bayling-ops version 2" in again.stdout + again.stderr
    assert len(ops.client().search_model_versions(f"name = '{MODEL}'")) == 2 and register_json(ops)["version"] == "2"


def test_dvc_pull_restores_the_outputs_in_a_fresh_clone(ops: Ops, tmp_path: Path):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]
    subprocess.run(["git", "add", "-A"], cwd=ops.project, check=True)
    subprocess.run([*git, "commit", "-qm", "results"], cwd=ops.project, check=True)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ops.project), str(clone)], check=True)
    assert not (clone / "models" / "final").exists()
    pulled = dvc(ops, "pull", cwd=clone)
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    for rel in (
        "data/raw/corpus.jsonl",
        "data/synth/train.jsonl",
        "models/final/model.safetensors",
        "data/tokenized/train/dataset_info.json",
    ):
        assert (clone / rel).read_bytes() == (ops.project / rel).read_bytes(), rel
    status = dvc(ops, "status", cwd=clone)
    assert "Data and pipelines are up to date" in status.stdout, status.stdout


def test_a_crash_mid_pipeline_resumes_without_redoing_finished_stages(ops: Ops):
    overrides = ("-S", "synthesize.seed=5", "-S", "register.approval.required=false")
    proc, log = start_flow(ops, "5-crash", *overrides)
    deadline = time.monotonic() + FLOW_TIMEOUT_S
    while "Task run 'dvc-repro-train'" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-4000:]
        time.sleep(0.5)
    time.sleep(2)
    os.killpg(proc.pid, signal.SIGKILL)  # the flow, dvc and the stage process, as a lost machine would
    proc.wait()
    assert "Task run 'dvc-repro-register'" not in log.read_text()

    proc, log = start_flow(ops, "6-resume")
    output = finish(proc, log)
    summary = output[output.rindex("stages: ") :].splitlines()[0]
    for stage in ("fetch", "synthesize", "tokenize"):
        assert f"{stage} (up to date" in summary, summary
    assert "train (ran" in summary and "register (ran" in summary, summary


def test_no_planted_secret_reaches_tracking_artifacts_or_committed_files(ops: Ops):
    import boto3

    client = ops.client()
    found: list[str] = []

    def scan(where: str, text: str) -> None:
        found.extend(f"{where}: {secret[:12]}..." for secret in ops.planted if secret in text)

    experiments = client.search_experiments()
    runs = client.search_runs([e.experiment_id for e in experiments], max_results=1000)
    assert len(runs) >= 12
    for r in runs:
        scan(f"run {r.info.run_id} params", json.dumps(r.data.params))
        scan(f"run {r.info.run_id} tags", json.dumps(r.data.tags))
    for version in client.search_model_versions(f"name = '{MODEL}'"):
        scan(f"version {version.version} tags", json.dumps(version.tags))
    s3 = boto3.client(
        "s3", endpoint_url=ops.s3_endpoint, aws_access_key_id="ops-tester", aws_secret_access_key=ops.planted[0], region_name="us-east-1"
    )
    artifacts = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="mlflow/"):
        for obj in page.get("Contents", []):
            artifacts += 1
            scan(obj["Key"], s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read().decode("utf-8", "replace"))
    assert artifacts > 20  # models, predictions, reports, gate.json: the scan looked at real artifacts
    tracked = subprocess.run(["git", "ls-files"], cwd=ops.project, capture_output=True, text=True).stdout.split()
    for rel in tracked:
        scan(rel, (ops.project / rel).read_text("utf-8", "replace"))
    assert not found, found
