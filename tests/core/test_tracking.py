from pathlib import Path

import pytest

from bayling.core.tracking import (
    PARENT_RUN_ENV,
    ResilientLogger,
    configure,
    optional_stage_run,
    stage_run,
    tracking_uri,
)


@pytest.fixture
def local_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield tmp_path
    import mlflow

    mlflow.set_tracking_uri(None)


def test_default_store_is_a_project_sqlite_file_with_local_artifacts(local_store: Path):
    import mlflow

    assert tracking_uri(local_store) == f"sqlite:///{local_store.resolve()}/mlflow.db"
    experiment_id = configure(local_store, "exp")
    location = mlflow.MlflowClient().get_experiment(experiment_id).artifact_location
    assert location == (local_store / "mlartifacts").resolve().as_uri()
    assert configure(local_store, "exp") == experiment_id


def test_stage_runs_hang_under_the_parent_named_in_their_environment(local_store: Path, monkeypatch: pytest.MonkeyPatch):
    import mlflow

    experiment_id = configure(local_store, "exp")
    client = mlflow.MlflowClient()
    parent = client.create_run(experiment_id, run_name="retrain")
    with stage_run(local_store, "fetch", "exp") as run:  # no parent named: a run of its own
        assert "mlflow.parentRunId" not in client.get_run(run.info.run_id).data.tags
    monkeypatch.setenv(PARENT_RUN_ENV, parent.info.run_id)
    with stage_run(local_store, "train", "exp") as run:
        child_id = run.info.run_id
    assert client.get_run(child_id).data.tags["mlflow.parentRunId"] == parent.info.run_id
    client.set_terminated(parent.info.run_id)
    with stage_run(local_store, "train", "exp") as run:  # a finished parent is not adopted
        orphan_id = run.info.run_id
    assert "mlflow.parentRunId" not in client.get_run(orphan_id).data.tags


def test_unreachable_server_is_reported_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from servers import free_port

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with optional_stage_run(tmp_path, "train", "exp") as run:
        assert run is None
        logger = ResilientLogger()
        logger.log_metrics({"loss": 1.0}, step=1)
        logger.log_params({"a": 1})
    assert logger.failures == 2
    assert "2 tracking calls failed" in logger.summary()
    import mlflow

    mlflow.set_tracking_uri(None)


def test_runs_whose_process_is_gone_are_ended_as_killed_and_live_ones_are_left(local_store: Path):
    """kill -9 of a retrain leaves its parent and stage runs RUNNING: the next retrain on the host ends them, and
    only them (a live process's run, and another host's, stay RUNNING)."""
    import subprocess
    import sys

    import mlflow
    import psutil

    from bayling.core.tracking import close_orphaned_runs, process_tags

    experiment_id = configure(local_store, "orphans")
    client = mlflow.MlflowClient()
    dead = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    dead_tags = {**process_tags(), "bayling.pid": str(dead.pid), "bayling.pid_started": f"{psutil.Process(dead.pid).create_time():.3f}"}
    dead.kill()
    dead.wait()
    killed = client.create_run(experiment_id, tags=dead_tags).info.run_id
    live = client.create_run(experiment_id, tags=process_tags()).info.run_id
    reused_pid = client.create_run(experiment_id, tags={**process_tags(), "bayling.pid_started": "1.0"}).info.run_id
    elsewhere = client.create_run(experiment_id, tags={**dead_tags, "bayling.host": "another-host"}).info.run_id
    assert sorted(close_orphaned_runs(client, experiment_id)) == sorted([killed, reused_pid])
    status = {run_id: client.get_run(run_id).info.status for run_id in (killed, live, reused_pid, elsewhere)}
    assert status == {killed: "KILLED", live: "RUNNING", reused_pid: "KILLED", elsewhere: "RUNNING"}
    assert "was gone" in client.get_run(killed).data.tags["bayling.ended_by"]
    assert close_orphaned_runs(client, experiment_id) == []
