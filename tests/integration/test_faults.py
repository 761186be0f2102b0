"""S3 that is down or erroring, during fetch and during the flow's DVC pull and push: bounded retries with
backoff, then one clear failure, and no partial file left among the outputs. Also: a stage that finds
DVC's lock held by another process is retried by the flow instead of failing the run.

The erroring endpoint is `FailingS3` (every request answered 503 SlowDown, each one counted); the
endpoint that is down is a free loopback port nobody listens on. MLflow outages and crashes mid-flow
are in test_operations.py, against the real servers there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from servers import FailingS3, free_port

pytestmark = pytest.mark.integration

SOURCE = "s3://corpora/pairs/en-fr.tsv"


def fetch_from(project: Path, endpoint: str, tmp: Path) -> tuple[subprocess.CompletedProcess, float]:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["fetch"]["sources"] = [{"name": "remote", "format": "tsv", "uri": SOURCE, "columns": ["eng_Latn", "fra_Latn"]}]
    params["fetch"]["s3_endpoint_url"] = endpoint
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    tmp.mkdir()
    env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
               TMPDIR=str(tmp), MLFLOW_TRACKING_URI=f"sqlite:///{project / 'mlflow.db'}")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "stages.fetch"], cwd=project, env=env, capture_output=True, text=True, timeout=300)
    return result, time.monotonic() - started


def assert_nothing_left(project: Path, tmp: Path) -> None:
    raw = project / "data" / "raw"
    assert not raw.exists() or not list(raw.iterdir()), sorted(p.name for p in raw.iterdir())
    assert not list(tmp.iterdir()), "the downloaded temp file was left behind"


def test_fetch_with_the_s3_endpoint_down_fails_clearly(project_copy: Path, tmp_path: Path):
    endpoint = f"http://127.0.0.1:{free_port()}"
    result, seconds = fetch_from(project_copy, endpoint, tmp_path / "tmp")
    assert result.returncode == 2, result.stderr
    assert f"cannot read {SOURCE} (after up to 5 attempts)" in result.stderr
    assert "Could not connect to the endpoint URL" in result.stderr
    assert "Traceback" not in result.stderr
    assert_nothing_left(project_copy, tmp_path / "tmp")
    assert seconds < 120


def test_fetch_from_an_erroring_endpoint_retries_five_times_with_backoff(project_copy: Path, tmp_path: Path):
    with FailingS3() as s3:
        result, seconds = fetch_from(project_copy, s3.url, tmp_path / "tmp")
    assert result.returncode == 2, result.stderr
    assert f"cannot read {SOURCE} (after up to 5 attempts)" in result.stderr and "503" in result.stderr
    assert "Traceback" not in result.stderr
    assert s3.requests == ["HEAD /corpora/pairs/en-fr.tsv"] * 5
    assert_nothing_left(project_copy, tmp_path / "tmp")
    assert seconds < 120


def test_fetch_without_s3_credentials_is_one_line(project_copy: Path, tmp_path: Path):
    params = yaml.safe_load((project_copy / "params.yaml").read_text())
    params["fetch"]["sources"] = [{"name": "remote", "format": "tsv", "uri": SOURCE, "columns": ["eng_Latn", "fra_Latn"]}]
    params["fetch"]["s3_endpoint_url"] = f"http://127.0.0.1:{free_port()}"
    (project_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(HOME=str(tmp_path), MLFLOW_TRACKING_URI=f"sqlite:///{project_copy / 'mlflow.db'}")  # no ~/.aws either
    result = subprocess.run([sys.executable, "-m", "stages.fetch"], cwd=project_copy, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (error,) = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert f"cannot read {SOURCE}" in error and "Unable to locate credentials" in error and "AWS_ACCESS_KEY_ID" in error


def fetch_is_intact(project: Path, env: dict) -> bool:
    """`dvc status fetch`: the workspace's data/raw is exactly what dvc.lock recorded."""
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "fetch"], cwd=project, env=env, capture_output=True, text=True)
    return status.returncode == 0 and "Data and pipelines are up to date" in status.stdout


def test_flow_push_and_pull_against_an_erroring_remote(repo_root: Path, prefect_api: str, tmp_path: Path):
    from tools.smoke import make_copy

    project = tmp_path / "project"
    make_copy(repo_root, project, repo_root / "profiles" / "smoke.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_API", "AWS_"))}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
               AWS_MAX_ATTEMPTS="2",  # botocore's attempts per request inside s3fs; the flow retries on top
               BAYLING_ROOT=str(project), BAYLING_SYNC_RETRY_DELAYS="0.5,1", PREFECT_API_URL=prefect_api,
               PREFECT_HOME=str(tmp_path / "prefect-home"), MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}")
    with FailingS3() as s3:
        for args in (("remote", "add", "-d", "store", "s3://bayling/dvc"), ("remote", "modify", "store", "endpointurl", s3.url)):
            subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project, check=True, capture_output=True)
        flow = [sys.executable, "-m", "flows.retrain", "--stage", "base_model", "--stage", "fetch"]

        pushed = subprocess.run(flow, cwd=project, env=env, capture_output=True, text=True, timeout=400)
        output = pushed.stdout + pushed.stderr
        assert pushed.returncode == 1, output[-5000:]
        assert "error: dvc push failed (exit" in pushed.stderr and "SlowDown" in output
        assert output.count("Retry 1/2") == 1 and output.count("Retry 2/2") == 1, output[-5000:]
        puts = [r for r in s3.requests if r.startswith("PUT ")]
        assert puts and all(r.startswith("PUT /bayling/dvc/") for r in puts)
        # the stages' outputs stay, whole, in the workspace and the local cache: the next push can send them
        assert (project / "data" / "raw" / "corpus.jsonl").is_file()
        assert fetch_is_intact(project, env)
        assert not [p for p in (project / "data" / "raw").iterdir() if p.name.endswith(".tmp")]

        asked = len(s3.requests)
        pulled = subprocess.run(flow, cwd=project, env=env, capture_output=True, text=True, timeout=400)
        output = pulled.stdout + pulled.stderr
        assert pulled.returncode == 1, output[-5000:]
        assert "error: dvc pull failed" in pulled.stderr and "503" in output
        assert "dvc-repro-" not in output  # no stage ran on top of a pull that failed
        assert output.count("Retry 2/2") == 1 and len(s3.requests) > asked
        assert fetch_is_intact(project, env)


def test_flow_retries_a_stage_while_another_dvc_process_holds_the_lock(repo_root: Path, prefect_api: str, tmp_path: Path):
    from tools.smoke import make_copy

    project = tmp_path / "project"
    make_copy(repo_root, project, repo_root / "profiles" / "smoke.yaml")
    (project / ".dvc" / "tmp").mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_API", "AWS_"))}
    env.update(BAYLING_ROOT=str(project), MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}", PREFECT_API_URL=prefect_api)
    # DVC's own repository lock (zc.lockfile on .dvc/tmp/lock), held as a concurrent `dvc` command would,
    # until the stage has failed on it once; the flow's retry comes 5 s later.
    holder = subprocess.Popen([sys.executable, "-c", "import sys, zc.lockfile; lock = zc.lockfile.LockFile(sys.argv[1]); "
                               "print('held', flush=True); sys.stdin.readline(); lock.close()", str(project / ".dvc" / "tmp" / "lock")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdin is not None and holder.stdout.readline().strip() == "held"
    log = tmp_path / "flow.log"
    with open(log, "w") as handle:
        flow = subprocess.Popen([sys.executable, "-m", "flows.retrain", "--stage", "base_model"], cwd=project, env=env,
                                stdout=handle, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while "Unable to acquire lock" not in log.read_text():
        assert flow.poll() is None and time.monotonic() < deadline, log.read_text()[-5000:]
        time.sleep(0.2)
    holder.stdin.write("release\n")
    holder.stdin.flush()
    holder.wait(timeout=30)
    assert flow.wait(timeout=300) == 0, log.read_text()[-5000:]
    output = log.read_text()
    assert "Retry 1/2" in output and "Retry 2/2" not in output
    assert "base_model (ran" in output
    assert (project / "models" / "base" / "config.json").is_file()
