"""Decisions on registered versions against a real MLflow server (without users: every identity is the
OS user, recorded as unauthenticated), and a timed-out pause on a real Prefect API."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bayling.approvals.decisions import apply_decision
from bayling.approvals.trail import history
from bayling.config.register import ApprovalParams
from bayling.core.errors import PipelineError
from bayling.register.mlflow_user import Identity

pytestmark = pytest.mark.integration
ALICE, BOB = Identity("alice", authenticated=False), Identity("bob", authenticated=False)
SETTINGS = ApprovalParams()


def register_run(client, experiment_id: str, sha: str, passed: bool | None, registered_by: str = "pipeline",
                 model_name: str = "approval-gate-model") -> str:
    """A run as the register stage logs one: the model hash, and the gate verdict as an immutable param
    (None: the run stopped before the gate)."""
    run = client.create_run(experiment_id)
    params = {"model_sha256": sha, "model_name": model_name, "registered_by": registered_by,
              **({} if passed is None else {"gate_passed": str(passed).lower()})}
    for key, value in params.items():
        client.log_param(run.info.run_id, key, value)
    client.log_text(run.info.run_id, "weights", "model/weights.txt")
    return run.info.run_id


def make_versions(client, name: str, count: int, passed: bool | None = True) -> list[str]:
    """`count` versions of a registered model, each from its own register run with its own model files."""
    experiment = client.get_experiment_by_name("approval-test") or client.get_experiment(client.create_experiment("approval-test"))
    client.create_registered_model(name)
    versions = []
    for i in range(count):
        run_id = register_run(client, experiment.experiment_id, f"{name}-files-{i}", passed, model_name=name)
        versions.append(client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id).version)
    return versions


def champion(client, name: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, "champion").version
    except MlflowException:
        return None


def test_every_decision_is_its_own_record_and_none_is_ever_lost(mlflow_uri):
    import mlflow

    client = mlflow.MlflowClient(mlflow_uri)
    v1, v2, v3 = make_versions(client, "approval-model", 3)
    first = apply_decision(client, "approval-model", v1, "approve", ALICE, SETTINGS, display_name="Alice A.", note="first one",
                           flow_run_id="run-a")
    assert first.champion_moved and first.previous_champion == "none" and champion(client, "approval-model") == v1
    apply_decision(client, "approval-model", v2, "approve", BOB, SETTINGS, note="better chrF", flow_run_id="run-b")
    assert champion(client, "approval-model") == v2
    tags = client.get_model_version("approval-model", v2).tags
    assert {k: tags[k] for k in ("decision", "reviewed_by", "flow_run_id", "previous_champion", "note", "reviewer_authenticated")} == {
        "decision": "approve", "reviewed_by": "bob", "flow_run_id": "run-b", "previous_champion": v1, "note": "better chrF",
        "reviewer_authenticated": "false"}
    old = client.get_model_version("approval-model", v1).tags
    assert old["superseded_by"] == v2 and old["champion_until"] == tags["champion_since"]

    # Long notes used to be cut to fit one history tag, which then stopped being JSON and reset the history.
    long_notes = ["x" * 1900, "y" * 1950, "z" * 1999]
    apply_decision(client, "approval-model", v3, "reject", ALICE, SETTINGS, note=long_notes[0])
    apply_decision(client, "approval-model", v3, "reject", BOB, SETTINGS, note=long_notes[1])
    apply_decision(client, "approval-model", v3, "approve", ALICE, SETTINGS, note=long_notes[2])
    records = history(client, "approval-model", v3)
    assert [(r["decision"], r["identity"], r["note"]) for r in records] == [
        ("reject", "alice", long_notes[0]), ("reject", "bob", long_notes[1]), ("approve", "alice", long_notes[2])]
    assert records[-1]["previous_champion"] == v2 and records[-1]["champion_after"] == v3 and champion(client, "approval-model") == v3

    with pytest.raises(PipelineError, match="already holds 'champion'"):
        apply_decision(client, "approval-model", v3, "approve", BOB, SETTINGS)
    with pytest.raises(PipelineError, match="has no version 99"):
        apply_decision(client, "approval-model", "99", "approve", BOB, SETTINGS)
    with pytest.raises(PipelineError, match="at most 2000 are kept"):
        apply_decision(client, "approval-model", v1, "reject", BOB, SETTINGS, note="n" * 2001)
    for bad in ("", "Alice\nAdmin", "\x1b[31mroot", "a" * 101):
        with pytest.raises(PipelineError, match="--by"):
            apply_decision(client, "approval-model", v1, "reject", BOB, SETTINGS, display_name=bad or "\u202eevil")
    assert len(history(client, "approval-model", v1)) == 1  # refused inputs wrote nothing


def test_version_numbers_are_registry_versions_not_strings(mlflow_uri):
    import mlflow

    client = mlflow.MlflowClient(mlflow_uri)
    v1, v2 = make_versions(client, "approval-number-model", 2)
    apply_decision(client, "approval-number-model", v1, "approve", ALICE, SETTINGS)
    with pytest.raises(PipelineError, match="already holds 'champion'"):
        apply_decision(client, "approval-number-model", "01", "approve", ALICE, SETTINGS)
    record = apply_decision(client, "approval-number-model", "0002", "approve", ALICE, SETTINGS)
    assert record.version == v2 and champion(client, "approval-number-model") == v2
    assert client.get_model_version("approval-number-model", v1).tags["superseded_by"] == v2
    with pytest.raises(PipelineError, match="is not a version number"):
        apply_decision(client, "approval-number-model", "latest", "approve", ALICE, SETTINGS)


@pytest.mark.parametrize("policy", ["refuse", "clear", "previous"])
def test_rejecting_the_champion_never_leaves_the_registry_inconsistent(mlflow_uri, policy):
    import mlflow

    client = mlflow.MlflowClient(mlflow_uri)
    name = f"approval-reject-{policy}"
    v1, v2 = make_versions(client, name, 2)
    apply_decision(client, name, v1, "approve", ALICE, SETTINGS)
    apply_decision(client, name, v2, "approve", ALICE, SETTINGS)
    settings = ApprovalParams(reject_champion=policy)
    if policy == "refuse":
        with pytest.raises(PipelineError, match="is the current 'champion'"):
            apply_decision(client, name, v2, "reject", BOB, settings)
        assert champion(client, name) == v2 and client.get_model_version(name, v2).tags["decision"] == "approve"
        return
    record = apply_decision(client, name, v2, "reject", BOB, settings, note="regression found after release")
    expected = v1 if policy == "previous" else None
    assert champion(client, name) == expected and record.champion_after == (expected or "none")
    assert history(client, name, v2)[-1]["decision"] == "reject"


def test_a_gate_failure_stands_whatever_later_runs_or_tags_say(mlflow_uri, repo_root, tmp_path):
    """The verdict is read from the register runs' immutable params: a later passing run of the same files
    (a looser gate, evaluate re-run), a forged gate tag, or a version whose register run never reached the
    gate: none of them lets a plain approve through. --override-gate does, and is recorded."""
    import json

    import mlflow

    client = mlflow.MlflowClient(mlflow_uri)
    name = "approval-gate-model"
    (good,) = make_versions(client, name, 1)
    apply_decision(client, name, good, "approve", ALICE, SETTINGS)
    experiment = client.get_experiment_by_name("approval-test").experiment_id
    failing = register_run(client, experiment, "gate-files", passed=False)
    failed = client.create_model_version(name, f"runs:/{failing}/model", run_id=failing).version
    register_run(client, experiment, "gate-files", passed=True)  # the same files again, under a looser gate
    client.set_model_version_tag(name, failed, "gate.0002.deadbeef", json.dumps({"passed": True, "evaluation": "forged:2"}))
    client.set_model_version_tag(name, failed, "gate", "passed")
    unjudged_run = register_run(client, experiment, "killed-files", passed=None)
    unjudged = client.create_model_version(name, f"runs:/{unjudged_run}/model", run_id=unjudged_run).version
    with pytest.raises(PipelineError, match="no gate verdict was recorded"):
        apply_decision(client, name, unjudged, "approve", BOB, SETTINGS)

    (tmp_path / "params.yaml").write_text((repo_root / "params.yaml").read_text().replace(
        "model_name: bayling-smollm2-135m", f"model_name: {name}").replace("experiment: bayling-pipeline", "experiment: approval-test"))
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(MLFLOW_TRACKING_URI=mlflow_uri, BAYLING_ROOT=str(tmp_path))
    command = [sys.executable, "-m", "tools.approve", failed, "--decision", "approve", "--by", "Bob"]
    refused = subprocess.run(command, cwd=repo_root, env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "failed the gate" in refused.stderr and "--override-gate" in refused.stderr
    assert "Traceback" not in refused.stderr and champion(client, name) == good
    forced = subprocess.run([*command, "--override-gate", "--note", "known eval bug"], cwd=repo_root, env=env, capture_output=True,
                            text=True)
    assert forced.returncode == 0, forced.stderr
    tags = client.get_model_version(name, failed).tags
    assert tags["gate_overridden_by"] and history(client, name, failed)[-1]["gate_overridden"] is True
    listing = subprocess.run([sys.executable, "-m", "tools.approve", "--history", failed], cwd=repo_root, env=env, capture_output=True,
                             text=True)
    assert listing.returncode == 0 and '"decision": "approve"' in listing.stdout and "known eval bug" in listing.stdout


def test_a_pause_that_times_out_leaves_the_champion(mlflow_uri, prefect_api, monkeypatch, tmp_path: Path):
    import mlflow
    from prefect import flow
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from bayling.config.register import RegisterParams
    from flows.retrain import request_approval

    client = mlflow.MlflowClient(mlflow_uri)
    v1, v2 = make_versions(client, "approval-timeout-model", 2)
    apply_decision(client, "approval-timeout-model", v1, "approve", ALICE, SETTINGS)
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
