"""Decisions on registered versions against a real MLflow server, and a timed-out pause on a real Prefect API."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bayling.core.errors import PipelineError
from bayling.register.approval import apply_decision

pytestmark = pytest.mark.integration


def make_versions(client, name: str, count: int) -> list[str]:
    """`count` versions of a registered model, each pointing at a small logged artifact."""
    experiment = client.get_experiment_by_name("approval-test") or client.get_experiment(client.create_experiment("approval-test"))
    run = client.create_run(experiment.experiment_id)
    client.log_text(run.info.run_id, "weights", "model/weights.txt")
    client.create_registered_model(name)
    return [client.create_model_version(name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id).version for _ in range(count)]


def champion(client, name: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, "champion").version
    except MlflowException:
        return None


def test_approve_moves_champion_and_every_decision_is_tagged(mlflow_uri):
    import mlflow

    client = mlflow.MlflowClient(mlflow_uri)
    v1, v2, v3 = make_versions(client, "approval-model", 3)
    first = apply_decision(client, "approval-model", v1, "approve", "alice", "first one", "run-a")
    assert first.champion_moved and first.previous_champion == "none" and champion(client, "approval-model") == v1
    apply_decision(client, "approval-model", v2, "approve", "bob", "better chrF", "run-b")
    assert champion(client, "approval-model") == v2
    tags = client.get_model_version("approval-model", v2).tags
    assert {k: tags[k] for k in ("decision", "reviewed_by", "flow_run_id", "previous_champion", "note")} == {
        "decision": "approve", "reviewed_by": "bob", "flow_run_id": "run-b", "previous_champion": v1, "note": "better chrF"}
    assert tags["reviewed_at"] and tags["champion_since"] == tags["reviewed_at"]
    old = client.get_model_version("approval-model", v1).tags
    assert old["superseded_by"] == v2 and old["champion_until"] == tags["reviewed_at"]

    rejected = apply_decision(client, "approval-model", v3, "reject", "carol", "worse on sw", "run-c")
    assert not rejected.champion_moved and champion(client, "approval-model") == v2
    assert client.get_model_version("approval-model", v3).tags["decision"] == "reject"
    # A second decision on the same version keeps the first in its history.
    apply_decision(client, "approval-model", v3, "approve", "dave", "re-reviewed", "run-d")
    import json

    history = json.loads(client.get_model_version("approval-model", v3).tags["decision_history"])
    assert [h["decision"] for h in history] == ["reject", "approve"] and champion(client, "approval-model") == v3

    with pytest.raises(PipelineError, match="already holds 'champion'"):
        apply_decision(client, "approval-model", v3, "approve", "erin")
    with pytest.raises(PipelineError, match="has no version 99"):
        apply_decision(client, "approval-model", "99", "approve", "erin")


def test_approve_command_acts_on_the_registry_when_no_run_is_paused(mlflow_uri, repo_root, tmp_path):
    import mlflow

    client = mlflow.MlflowClient(mlflow_uri)
    (version,) = make_versions(client, "approval-cli-model", 1)
    (tmp_path / "params.yaml").write_text((repo_root / "params.yaml").read_text().replace(
        "model_name: bayling-smollm2-135m", "model_name: approval-cli-model"))
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(MLFLOW_TRACKING_URI=mlflow_uri, BAYLING_ROOT=str(tmp_path))
    result = subprocess.run([sys.executable, "-m", "tools.approve", version, "--decision", "approve", "--by", "alice", "--note", "ok"],
                            cwd=repo_root, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "recorded approve on the registry directly" in result.stdout
    assert champion(client, "approval-cli-model") == version
    bad = subprocess.run([sys.executable, "-m", "tools.approve", "42", "--decision", "reject", "--by", "alice"],
                         cwd=repo_root, env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "has no version 42" in bad.stderr and "Traceback" not in bad.stderr


def test_a_version_that_failed_the_gate_is_approved_only_with_an_override(mlflow_uri, repo_root, tmp_path):
    import mlflow

    client = mlflow.MlflowClient(mlflow_uri)
    good, failed = make_versions(client, "approval-gate-model", 2)
    client.set_model_version_tag("approval-gate-model", failed, "gate", "failed")
    apply_decision(client, "approval-gate-model", good, "approve", "alice")
    (tmp_path / "params.yaml").write_text((repo_root / "params.yaml").read_text().replace(
        "model_name: bayling-smollm2-135m", "model_name: approval-gate-model"))
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(MLFLOW_TRACKING_URI=mlflow_uri, BAYLING_ROOT=str(tmp_path))
    command = [sys.executable, "-m", "tools.approve", failed, "--decision", "approve", "--by", "bob"]
    refused = subprocess.run(command, cwd=repo_root, env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "failed the gate" in refused.stderr and "--override-gate" in refused.stderr
    assert champion(client, "approval-gate-model") == good
    assert "decision" not in client.get_model_version("approval-gate-model", failed).tags
    # rejecting it needs no override
    apply_decision(client, "approval-gate-model", failed, "reject", "carol")
    forced = subprocess.run(
        [*command, "--override-gate", "--note", "known eval bug"], cwd=repo_root, env=env, capture_output=True, text=True
    )
    assert forced.returncode == 0, forced.stderr
    assert champion(client, "approval-gate-model") == failed
    tags = client.get_model_version("approval-gate-model", failed).tags
    assert tags["gate_overridden_by"] == "bob" and tags["decision"] == "approve" and tags["previous_champion"] == good


def test_a_pause_that_times_out_leaves_the_champion(mlflow_uri, prefect_api, monkeypatch, tmp_path: Path):
    import mlflow
    from prefect import flow
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from bayling.config.register import RegisterParams
    from flows.retrain import request_approval

    client = mlflow.MlflowClient(mlflow_uri)
    v1, v2 = make_versions(client, "approval-timeout-model", 2)
    apply_decision(client, "approval-timeout-model", v1, "approve", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)
    monkeypatch.setenv("BAYLING_APPROVAL_POLL_S", "1")
    register = RegisterParams.model_validate({"model_name": "approval-timeout-model", "approval": {"required": True, "timeout_s": 2}})
    registration = {"model_name": "approval-timeout-model", "version": v2, "run_id": "r", "gate": {"passed": True, "rules": []}}

    @flow
    def wait_for_a_reviewer() -> dict:
        return request_approval({"register": register}, {"register": registration, "eval": {}}, "flow-run-x")

    with temporary_settings({PREFECT_API_URL: prefect_api}):
        outcome = wait_for_a_reviewer()
        APILogWorker.drain_all(timeout=10)  # before the session's server goes away
    assert outcome == {"decision": "timeout"}
    assert champion(client, "approval-timeout-model") == v1
    tags = client.get_model_version("approval-timeout-model", v2).tags
    assert tags["decision"] == "timeout" and tags["previous_champion"] == v1 and tags["flow_run_id"] == "flow-run-x"
