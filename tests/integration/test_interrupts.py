"""Runs that collide or are interrupted, as `make run` meets them: Prefect's temporary server, MLflow in
the project's sqlite file, the smoke profile. The interrupted run and the server that cannot start use the
temporary server, as `make run` does (the suite's one path through it); the other runs use the session's.

- a second run in the same checkout is refused clearly, or waits with --wait;
- one Ctrl-C (SIGINT to the foreground process group, as a terminal sends it) stops the flow within
  seconds without a traceback, marks the MLflow parent run KILLED and the stage's run FAILED, and the
  next run resumes from DVC's cache;
- a temporary Prefect server that cannot start is one line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def project(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    from tools.smoke import make_copy

    work = tmp_path_factory.mktemp("interrupts")
    dest = work / "project"
    make_copy(repo_root, dest, repo_root / "profiles" / "smoke.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_API", "BAYLING_", "AWS_"))}
    env.update(BAYLING_ROOT=str(dest), PREFECT_HOME=str(work / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    return dest, env


def flow(project: tuple[Path, dict[str, str]], *args: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    dest, base = project
    with open(log, "w") as handle:
        return subprocess.Popen([sys.executable, "-m", "flows.retrain", *args], cwd=dest, env=env or base, stdout=handle,
                                stderr=subprocess.STDOUT, start_new_session=True)


def runs(dest: Path) -> list:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{dest / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, order_by=["attributes.start_time DESC"], max_results=50)


def test_a_second_run_in_the_same_checkout_is_refused_or_waits(project, prefect_api: str, tmp_path: Path):
    from flows.runtime.checkout import hold_checkout

    dest, base = project
    session = dict(base, PREFECT_API_URL=prefect_api)  # the lock is the subject here, not the temporary server
    with hold_checkout(dest, "flow-run-held-by-the-test"):
        refused = flow(project, "--stage", "fetch", log=tmp_path / "refused.log", env=session)
        assert refused.wait(timeout=180) == 2  # refused: a user error (flows/runtime/exits.py)
        text = (tmp_path / "refused.log").read_text()
        assert f"another retrain run holds this checkout (pid {os.getpid()}" in text and "flow-run-held-by-the-test" in text
        assert "Traceback" not in text and not (dest / "data" / "raw" / "corpus.jsonl").exists()

        waiting = flow(project, "--stage", "fetch", "--wait", "120", log=tmp_path / "waited.log", env=session)
        deadline = time.monotonic() + 120
        while "waiting up to 120s for it" not in (tmp_path / "waited.log").read_text() and waiting.poll() is None:
            assert time.monotonic() < deadline, (tmp_path / "waited.log").read_text()
            time.sleep(0.2)
        time.sleep(2)  # it keeps waiting while the checkout is held
        assert waiting.poll() is None, (tmp_path / "waited.log").read_text()
        assert "flow-run-held-by-the-test" in (tmp_path / "waited.log").read_text()
    assert waiting.wait(timeout=180) == 0, (tmp_path / "waited.log").read_text()[-3000:]
    assert (dest / "data" / "raw" / "corpus.jsonl").is_file()


def test_one_ctrl_c_stops_the_run_cleanly_and_the_next_run_resumes(project, prefect_api: str, tmp_path: Path):
    dest, base = project
    log = tmp_path / "interrupted.log"
    proc = flow(project, log=log)
    deadline = time.monotonic() + 600
    while "Task run 'dvc-repro-train'" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-4000:]
        time.sleep(0.5)
    while "[train]" not in log.read_text():  # the stage itself is under way
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-4000:]
        time.sleep(0.2)
    interrupted_at = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal does with Ctrl-C
    code = proc.wait(timeout=120)
    took = time.monotonic() - interrupted_at
    text = log.read_text()
    assert code == 130, text[-4000:]
    assert took < 30, f"took {took:.1f}s to stop"
    assert "Traceback" not in text and "Connection refused" not in text, text[-4000:]
    assert "error: interrupted during stage 'train'" in text

    latest = runs(dest)
    parent = next(r for r in latest if r.info.run_name == "retrain")
    children = {r.info.run_name: r.info.status for r in latest if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert parent.info.status == "KILLED"
    assert children["train"] in ("FAILED", "KILLED") and children["tokenize"] == "FINISHED"
    assert not [r for r in latest if r.info.status == "RUNNING"]

    # up to train: evaluate and register have nothing to say about resuming
    resumed = flow(project, *[f"--stage={s}" for s in ("fetch", "synthesize", "tokenize", "train")], log=tmp_path / "resumed.log",
                   env=dict(base, PREFECT_API_URL=prefect_api))
    assert resumed.wait(timeout=900) == 0, (tmp_path / "resumed.log").read_text()[-4000:]
    output = (tmp_path / "resumed.log").read_text()
    summary = output[output.rindex("stages: "):].splitlines()[0]
    for stage in ("fetch", "synthesize", "tokenize"):
        assert f"{stage} (up to date" in summary, summary
    assert "train (ran" in summary, summary


def test_a_temporary_prefect_server_that_cannot_start_is_one_line(project, tmp_path: Path):
    _, env = project
    broken = dict(env, PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{tmp_path}/no/such/folder/prefect.db",
                  PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="20")
    result = subprocess.run([sys.executable, "-m", "flows.retrain", "--stage", "fetch"], cwd=project[0], env=broken,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Prefect's temporary API server did not start" in errors[0] and "PREFECT_API_URL" in errors[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert "unable to open database file" in (project[0] / ".bayling" / "prefect-server.log").read_text()

