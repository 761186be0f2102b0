"""Who may decide on a registered version, as a real basic-auth MLflow server (infra/mlflow/basic_auth.ini)
says, on both paths: `tools.approve` acting on the registry directly, and a retrain run paused for a
decision on a real Prefect server.

Users, created through the server's own API: admin (the pipeline's identity), reviewer (MANAGE on the
model), reader (READ, the server's default) and editor (EDIT, enough to register versions).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration

MODEL = "authz-model"
PASSWORDS = {"reviewer": "reviewer-password-1", "reader": "reader-password-1", "editor": "editor-password-1"}
FLOW = """
import json, sys
from prefect import flow
from bayling.config.register import RegisterParams
from flows.retrain import request_approval

register = RegisterParams.model_validate(json.loads(sys.argv[1]))
registration = json.loads(sys.argv[2])

@flow(name="approval-under-test")
def wait_for_a_decision():
    return request_approval({"register": register}, {"register": registration, "eval": {}}, "flow-run-authz")

print("OUTCOME " + json.dumps(wait_for_a_decision()))
"""


def as_user(uri: str, user: str, password: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_API"))}
    env.update(MLFLOW_TRACKING_URI=uri, MLFLOW_TRACKING_USERNAME=user, MLFLOW_TRACKING_PASSWORD=password)
    return env


@pytest.fixture(scope="module")
def registry(auth_mlflow, repo_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """Users and grants on the auth server, a registered model with three versions, and a project folder
    whose params name that model; the admin registers two versions."""
    import mlflow

    uri, admin_password = auth_mlflow
    admin = ("admin", admin_password)
    for user, password in PASSWORDS.items():
        created = httpx.post(f"{uri}/api/2.0/mlflow/users/create", json={"username": user, "password": password}, auth=admin, timeout=10)
        assert created.status_code == 200, created.text
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    os.environ.update(MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD=admin_password)
    try:
        client = mlflow.MlflowClient(uri)
        client.create_registered_model(MODEL)
        run = client.create_run(client.create_experiment("authz"))
        versions = [client.create_model_version(MODEL, f"runs:/{run.info.run_id}/model", run.info.run_id,
                                                tags={"registered_by": "admin", "gate": "passed"}).version for _ in range(2)]
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    for user, level in (("reviewer", "MANAGE"), ("editor", "EDIT")):
        granted = httpx.post(f"{uri}/api/3.0/mlflow/users/permissions/grant", json={
            "username": user, "resource_type": "registered_model", "resource_id": MODEL, "permission": level}, auth=admin, timeout=10)
        assert granted.status_code == 200, granted.text
    project = tmp_path_factory.mktemp("authz-project")
    (project / "params.yaml").write_text((repo_root / "params.yaml").read_text().replace(
        "model_name: bayling-smollm2-135m", f"model_name: {MODEL}"))
    (project / "dvc.yaml").write_text((repo_root / "dvc.yaml").read_text())
    return {"uri": uri, "admin": admin_password, "versions": versions, "project": project}


def approve(registry: dict, user: str, *args: str, password: str | None = None, extra_env: dict | None = None
            ) -> subprocess.CompletedProcess:
    env = as_user(registry["uri"], user, password or (registry["admin"] if user == "admin" else PASSWORDS[user]))
    env.update(BAYLING_ROOT=str(registry["project"]), **(extra_env or {}))
    return subprocess.run([sys.executable, "-m", "tools.approve", *args], cwd=Path(__file__).resolve().parents[2], env=env,
                          capture_output=True, text=True, timeout=120)


def version_tags(registry: dict, version: str) -> dict[str, str]:
    response = httpx.get(f"{registry['uri']}/api/2.0/mlflow/model-versions/get", params={"name": MODEL, "version": version},
                         auth=("admin", registry["admin"]), timeout=10)
    return {t["key"]: t["value"] for t in response.json()["model_version"].get("tags", [])}


def champion(registry: dict) -> str | None:
    response = httpx.get(f"{registry['uri']}/api/2.0/mlflow/registered-models/alias", params={"name": MODEL, "alias": "champion"},
                         auth=("admin", registry["admin"]), timeout=10)
    return response.json()["model_version"]["version"] if response.status_code == 200 else None


def decisions(registry: dict, version: str) -> list[dict]:
    tags = version_tags(registry, version)
    return [json.loads(tags[k]) for k in sorted(tags) if k.startswith("decision.")]


def test_a_reader_cannot_approve_directly_and_a_reviewer_can(registry):
    first = registry["versions"][0]
    refused = approve(registry, "reader", first, "--decision", "approve", "--by", "Someone Else <someone@example.com>")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().count("\n") == 0, refused.stderr  # one line
    assert "reader holds READ" in refused.stderr and "needs MANAGE" in refused.stderr
    assert champion(registry) is None and decisions(registry, first) == []

    # wrong credentials are a clear line too, not a traceback
    bad = approve(registry, "reviewer", first, "--decision", "approve", password="not-the-password")
    assert bad.returncode == 2 and "refused the credentials" in bad.stderr and "Traceback" not in bad.stderr

    # --by is a display name beside the authenticated identity, never instead of it
    done = approve(registry, "reviewer", first, "--decision", "approve", "--by", "R. Viewer", "--note", "fine")
    assert done.returncode == 0, done.stderr
    assert champion(registry) == first
    tags = version_tags(registry, first)
    assert tags["reviewed_by"] == "reviewer" and tags["reviewer_authenticated"] == "true" and tags["reviewer_display"] == "R. Viewer"
    (record,) = decisions(registry, first)
    assert record["identity"] == "reviewer" and record["authenticated"] is True and record["path"] == "direct"


def test_the_registry_itself_refuses_a_reader_who_skips_the_tool(registry):
    """The check is the server's, not the tool's: a READ user's own client call to move the alias gets a 403,
    which the library reports as one line."""
    import mlflow

    from bayling.config.register import ApprovalParams
    from bayling.core.errors import PipelineError
    from bayling.register.approval import apply_decision
    from bayling.register.identity import Identity

    os.environ.update(MLFLOW_TRACKING_USERNAME="reader", MLFLOW_TRACKING_PASSWORD=PASSWORDS["reader"])
    try:
        client = mlflow.MlflowClient(registry["uri"])
        with pytest.raises(PipelineError, match="permission denied") as refused:
            apply_decision(client, MODEL, registry["versions"][1], "approve", Identity("reader", True), ApprovalParams())
        assert "\n" not in str(refused.value)
    finally:
        os.environ.pop("MLFLOW_TRACKING_USERNAME")
        os.environ.pop("MLFLOW_TRACKING_PASSWORD")
    assert champion(registry) != registry["versions"][1]


def test_separation_of_duties_refuses_whoever_registered_the_version(registry):
    editor_env = as_user(registry["uri"], "editor", PASSWORDS["editor"])
    script = ("import mlflow, os; c = mlflow.MlflowClient(); r = c.create_run(c.create_experiment('authz-editor')); "
              f"v = c.create_model_version('{MODEL}', f'runs:/{{r.info.run_id}}/model', r.info.run_id, "
              "tags={'registered_by': 'reviewer', 'gate': 'passed'}); print(v.version)")
    # editor (EDIT) may register versions; the tag names reviewer as the one who started the run
    made = subprocess.run([sys.executable, "-c", script], env=editor_env, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    version = made.stdout.strip().splitlines()[-1]
    params = registry["project"] / "params.yaml"
    original = params.read_text()
    params.write_text(original.replace("separation_of_duties: false", "separation_of_duties: true"))
    try:
        refused = approve(registry, "reviewer", version, "--decision", "approve")
        assert refused.returncode == 2 and "registered" in refused.stderr and "separation_of_duties" in refused.stderr
        assert "Traceback" not in refused.stderr
        # an editor holds EDIT, which the server would let move an alias, but deciding needs MANAGE
        editor = approve(registry, "editor", version, "--decision", "approve")
        assert editor.returncode == 2 and "editor holds EDIT" in editor.stderr
    finally:
        params.write_text(original)
    assert decisions(registry, version) == []


def wait_for_pause(prefect_api: str, proc: subprocess.Popen, key_prefix: str, seen: set[str], timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the flow ended (exit {proc.returncode}) instead of pausing:\n{proc.stdout.read()[-4000:]}")
        runs = httpx.post(f"{prefect_api}/flow_runs/filter", json={"flow_runs": {"state": {"type": {"any_": ["PAUSED"]}}}},
                          timeout=10).json()
        for run in runs:
            key = run["state"]["state_details"].get("pause_key") or ""
            if key.startswith(key_prefix) and key not in seen:
                seen.add(key)
                return run
        time.sleep(0.5)
    raise AssertionError(f"no run paused under {key_prefix}")


def test_a_paused_run_acts_only_for_a_verified_approver(registry, prefect_api):
    from prefect.flow_runs import resume_flow_run
    from prefect.settings import PREFECT_API_URL, temporary_settings

    version = registry["versions"][1]
    register = {"model_name": MODEL, "approval": {"required": True, "timeout_s": 300}}
    registration = {"model_name": MODEL, "version": version, "run_id": "r", "gate": {"passed": True, "rules": []}}
    env = as_user(registry["uri"], "admin", registry["admin"])  # the flow acts with the pipeline's own credentials
    env.update(PREFECT_API_URL=prefect_api, BAYLING_APPROVAL_POLL_S="1", BAYLING_ROOT=str(registry["project"]))
    proc = subprocess.Popen([sys.executable, "-c", FLOW, json.dumps(register), json.dumps(registration)],
                            cwd=Path(__file__).resolve().parents[2], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    seen: set[str] = set()
    try:
        key = f"approval-{MODEL}-v{version}"
        paused = wait_for_pause(prefect_api, proc, key, seen)
        challenge = version_tags(registry, version)["approval.challenge"]  # anyone with READ can see it

        # 1. the reader, through the tool: refused before the run is touched
        tool = approve(registry, "reader", version, "--decision", "approve", extra_env={"PREFECT_API_URL": prefect_api})
        assert tool.returncode == 2 and "reader holds READ" in tool.stderr and "Traceback" not in tool.stderr

        # 2. the reader, straight at the Prefect API, naming the reviewer and the challenge it could read:
        #    the challenge tag is still there (only MANAGE may delete it), so the run refuses and records it
        with temporary_settings({PREFECT_API_URL: prefect_api}):
            resume_flow_run(paused["id"], run_input={"decision": "approve", "identity": "reviewer", "authenticated": True,
                                                     "challenge": challenge, "display_name": "forged"})
        wait_for_pause(prefect_api, proc, key, seen)
        (refusal,) = decisions(registry, version)
        assert refusal["decision"] == "refused" and refusal["identity"] == "reviewer" and "challenge" in refusal["reason"]
        assert champion(registry) != version

        # 3. an input with no verifiable identity at all
        challenge = version_tags(registry, version)["approval.challenge"]
        with temporary_settings({PREFECT_API_URL: prefect_api}):
            resume_flow_run(paused["id"], run_input={"decision": "approve", "identity": "", "authenticated": False,
                                                     "challenge": challenge})
        wait_for_pause(prefect_api, proc, key, seen)
        assert [d["decision"] for d in decisions(registry, version)] == ["refused", "refused"]

        # 4. the reviewer, through the tool: the run verifies and moves the champion with its own credentials
        done = approve(registry, "reviewer", version, "--decision", "approve", "--note", "checked the regressions",
                       extra_env={"PREFECT_API_URL": prefect_api})
        assert done.returncode == 0 and "resumed flow run" in done.stdout, done.stderr
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output[-4000:]
    outcome = json.loads(output.split("OUTCOME ", 1)[1].splitlines()[0])
    assert outcome["decision"] == "approve" and outcome["reviewer"] == "reviewer"
    assert champion(registry) == version
    final = decisions(registry, version)[-1]
    assert final["identity"] == "reviewer" and final["authenticated"] is True and final["path"] == "paused-run"
    assert final["note"] == "checked the regressions"
    assert "approval.challenge" not in version_tags(registry, version)
