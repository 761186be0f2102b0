"""Who may decide on a registered version, as a real basic-auth MLflow server (infra/mlflow/basic_auth.ini)
says, on both paths: `tools.approve` acting on the registry directly, and a retrain run paused for a
decision on a real Prefect server.

Users, created through the server's own API: admin (the pipeline's identity), reviewer and manager (MANAGE
on the model), reader (READ, the server's default) and editor (EDIT, enough to register versions and tag
them, which is what the pipeline's own account holds).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration

MODEL = "authz-model"
PASSWORDS = {"reviewer": "reviewer-password-1", "reader": "reader-password-1", "editor": "editor-password-1",
             "manager": "manager-password-1"}
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


@contextmanager
def signed_in(user: str, password: str) -> Iterator[None]:
    """MLflow's client reads the credentials from the environment: these for the block, then as they were."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    os.environ.update(MLFLOW_TRACKING_USERNAME=user, MLFLOW_TRACKING_PASSWORD=password)
    try:
        yield
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


def register_version(client, experiment_id: str, sha: str, registered_by: str, passed: bool | None = True) -> str:
    """A version as the register stage makes one: its run's immutable params carry the model hash, who
    registered it and the gate verdict (None: the run stopped before the gate)."""
    run = client.create_run(experiment_id)
    params = {"model_sha256": sha, "model_name": MODEL, "registered_by": registered_by,
              **({} if passed is None else {"gate_passed": str(passed).lower()})}
    for key, value in params.items():
        client.log_param(run.info.run_id, key, value)
    return client.create_model_version(MODEL, f"runs:/{run.info.run_id}/model", run.info.run_id,
                                       tags={"registered_by": registered_by, "gate": "passed" if passed else "failed"}).version


@pytest.fixture(scope="module")
def registry(auth_mlflow, repo_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """Users and grants on the auth server, a registered model with two versions the admin registered, and a
    project folder whose params name that model."""
    import mlflow

    uri, admin_password = auth_mlflow
    admin = ("admin", admin_password)
    for user, password in PASSWORDS.items():
        created = httpx.post(f"{uri}/api/2.0/mlflow/users/create", json={"username": user, "password": password}, auth=admin, timeout=10)
        assert created.status_code == 200, created.text
    with signed_in("admin", admin_password):
        client = mlflow.MlflowClient(uri)
        client.create_registered_model(MODEL)
        experiment = client.create_experiment("authz")
        versions = [register_version(client, experiment, f"files-{i}", "admin") for i in range(2)]
    for user, level in (("reviewer", "MANAGE"), ("manager", "MANAGE"), ("editor", "EDIT")):
        granted = httpx.post(f"{uri}/api/3.0/mlflow/users/permissions/grant", json={
            "username": user, "resource_type": "registered_model", "resource_id": MODEL, "permission": level}, auth=admin, timeout=10)
        assert granted.status_code == 200, granted.text
    # the pipeline's account registers into this experiment, so it holds EDIT there as on the model
    granted = httpx.post(f"{uri}/api/3.0/mlflow/users/permissions/grant", json={
        "username": "editor", "resource_type": "experiment", "resource_id": experiment, "permission": "EDIT"}, auth=admin, timeout=10)
    assert granted.status_code == 200, granted.text
    project = tmp_path_factory.mktemp("authz-project")
    (project / "params.yaml").write_text((repo_root / "params.yaml").read_text().replace(
        "model_name: bayling-smollm2-135m", f"model_name: {MODEL}").replace("experiment: bayling-pipeline", "experiment: authz"))
    (project / "dvc.yaml").write_text((repo_root / "dvc.yaml").read_text())
    return {"uri": uri, "admin": admin_password, "versions": versions, "project": project, "experiment": experiment}


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


def trail_of(registry: dict, version: str, user: str = "admin") -> list[dict]:
    """Every record on the version as `user` reads it (the admin checks every ledger's ownership), with flags."""
    import mlflow

    from bayling.approvals.trail import trail

    with signed_in(user, registry["admin"] if user == "admin" else PASSWORDS[user]):
        return trail(mlflow.MlflowClient(registry["uri"]), MODEL, registry["uri"], version)


def decisions(registry: dict, version: str) -> list[dict]:
    """The decisions on the version (not the requests behind them) that verified."""
    return [r for r in trail_of(registry, version) if not r["flags"] and r.get("kind") != "request"]


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

    from bayling.approvals.decisions import apply_decision
    from bayling.config.register import ApprovalParams
    from bayling.core.errors import PipelineError
    from bayling.register.mlflow_user import Identity

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


def test_separation_of_duties_reads_who_registered_from_the_register_run(registry):
    """The registered_by tag is display only: a MANAGE user who re-sets it on their own version is still its
    registrant, because the register run's immutable param says so."""
    import mlflow

    granted = httpx.post(f"{registry['uri']}/api/3.0/mlflow/users/permissions/grant", json={
        "username": "reviewer", "resource_type": "experiment", "resource_id": registry["experiment"], "permission": "EDIT"},
        auth=("admin", registry["admin"]), timeout=10)  # the reviewer also runs the pipeline
    assert granted.status_code == 200, granted.text
    with signed_in("reviewer", PASSWORDS["reviewer"]):
        client = mlflow.MlflowClient(registry["uri"])
        version = register_version(client, registry["experiment"], "reviewer-files", "reviewer")
        client.set_model_version_tag(MODEL, version, "registered_by", "admin")
    params = registry["project"] / "params.yaml"
    original = params.read_text()
    params.write_text(original.replace("separation_of_duties: false", "separation_of_duties: true"))
    try:
        refused = approve(registry, "reviewer", version, "--decision", "approve")
        assert refused.returncode == 2 and "reviewer registered" in refused.stderr and "separation_of_duties" in refused.stderr
        assert "Traceback" not in refused.stderr
        # an editor holds EDIT, which the server would let move an alias, but deciding needs MANAGE
        editor = approve(registry, "editor", version, "--decision", "approve")
        assert editor.returncode == 2 and "editor holds EDIT" in editor.stderr
        assert decisions(registry, version) == []
        other = approve(registry, "manager", version, "--decision", "reject", "--note", "not mine to defend")
        assert other.returncode == 0, other.stderr
    finally:
        params.write_text(original)
    (record,) = decisions(registry, version)
    assert record["identity"] == "manager" and record["ledger"] == "manager" and record["decision"] == "reject"


def test_an_edit_holder_can_neither_pass_a_failed_gate_nor_rewrite_the_trail(registry):
    """What the pipeline's own account (EDIT) can do to a version's tags changes nothing an approval relies on,
    and every forgery it can write shows up FLAGGED in --history."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from bayling.approvals.ledger import ledger_name

    with signed_in("editor", PASSWORDS["editor"]):
        client = mlflow.MlflowClient(registry["uri"])
        failed = register_version(client, registry["experiment"], "failed-files", "editor", passed=False)
        # a passing gate verdict and a plain "passed" tag, forged on the failed version
        client.set_model_version_tag(MODEL, failed, "gate.0002.deadbeef", json.dumps({"passed": True, "evaluation": "forged:2"}))
        client.set_model_version_tag(MODEL, failed, "gate", "passed")
        # a second register run of the same files that claims a pass does not clear the failure either
        run = client.create_run(registry["experiment"])
        for key, value in {"model_sha256": "failed-files", "gate_passed": "true"}.items():
            client.log_param(run.info.run_id, key, value)
        # a decision tag in the old format, naming someone important
        client.set_model_version_tag(MODEL, failed, "decision.0001.cafecafe", json.dumps(
            {"decision": "approve", "identity": "ceo", "authenticated": True}))
        # versions that borrow a passing register run: the failed files served under a passing run of other files
        # (the server refuses those), and the failed files registered from the editor's own experiment, claiming a pass
        passing = client.get_model_version(MODEL, registry["versions"][0]).run_id
        failing_run = client.get_model_version(MODEL, failed).run_id
        artifacts = client.get_run(failing_run).info.artifact_uri
        for source in (f"runs:/{failing_run}/model", f"{artifacts}/model"):  # the server itself refuses these
            with pytest.raises(MlflowException, match="must identify the resource that contains the source"):
                client.create_model_version(MODEL, source, passing)
        elsewhere = register_version(client, client.create_experiment("authz-editor-own"), "failed-files", "editor", passed=True)
    before = champion(registry)
    plain = approve(registry, "reviewer", failed, "--decision", "approve")
    assert plain.returncode == 2 and "failed the gate" in plain.stderr and "--override-gate" in plain.stderr
    refused = approve(registry, "reviewer", elsewhere, "--decision", "approve")
    assert refused.returncode == 2 and "is not in the tracking experiment" in refused.stderr and "--override-gate" in refused.stderr
    assert champion(registry) == before

    # the reviewer's real decision sits in the reviewer's own ledger
    rejected = approve(registry, "reviewer", failed, "--decision", "reject", "--note", "gate failed")
    assert rejected.returncode == 0, rejected.stderr
    with signed_in("editor", PASSWORDS["editor"]):
        client = mlflow.MlflowClient(registry["uri"])
        ledger = client.get_experiment_by_name(ledger_name(MODEL, "reviewer"))
        with pytest.raises(MlflowException) as denied:  # the server refuses a record in another's ledger
            client.create_run(ledger.experiment_id)
        assert denied.value.error_code in ("PERMISSION_DENIED", "UNAUTHENTICATED")
        (real,) = client.search_runs([ledger.experiment_id], filter_string=f"params.record LIKE '%\"version\":\"{failed}\"%'")
        with pytest.raises(MlflowException):  # nor may it change or delete one
            client.log_param(real.info.run_id, "record", "{}")
        with pytest.raises(MlflowException):
            client.delete_run(real.info.run_id)
        # its own ledger takes a record that names someone else: it is flagged, not trusted
        from bayling.approvals import ledger as ledgers

        ledgers.append(client, MODEL, "editor", {"kind": "decision", "version": failed, "decision": "approve", "identity": "ceo",
                                                 "at": "2000-01-01T00:00:00+00:00"})
        # an `applied` record naming the reviewer, on the reviewer's real record, written by a non-admin
        reviewer_sha = real.data.params["sha256"]
        ledgers.append(client, MODEL, "editor", {"kind": "applied", "version": failed, "decision": "reject", "identity": "reviewer",
                                                 "recorded_by": "editor", "request": reviewer_sha, "at": "2000-01-02T00:00:00+00:00"})
        # a record that is JSON but not a record, and a ledger named for a user the server does not know
        junk = client.create_run(client.get_experiment_by_name(ledger_name(MODEL, "editor")).experiment_id)
        for key, value in {"record": "[]", "prev": "0" * 64, "sha256": "0" * 64}.items():
            client.log_param(junk.info.run_id, key, value)
        ledgers.append(client, MODEL, "ghost", {"kind": "decision", "version": failed, "decision": "approve", "identity": "ghost",
                                                "at": "2000-01-03T00:00:00+00:00"})
    rows = trail_of(registry, failed)
    trusted = [r for r in rows if not r["flags"]]
    assert [(r["identity"], r["decision"], r["ledger"]) for r in trusted] == [("reviewer", "reject", "reviewer")]
    flagged = [r for r in rows if r["flags"]]
    assert sum("ceo" == r.get("identity") for r in flagged) == 2  # the tag and the ledger record
    (applied,) = [r for r in flagged if r.get("kind") == "applied"]
    assert any("admin account records applied" in f for f in applied["flags"])
    (ghost,) = [r for r in flagged if r.get("ledger") == "ghost"]
    assert any("owner cannot be checked" in f or "may decide" in f for f in ghost["flags"])
    listing = approve(registry, "reader", "--history", failed)
    assert listing.returncode == 0 and "Traceback" not in listing.stderr, listing.stderr
    assert listing.stdout.count("FLAGGED") >= 3 and "UNCHECKED" in listing.stdout and '"identity": "reviewer"' in listing.stdout

    # an admin erasing a real record (deleting its run) breaks nothing silently: it is flagged
    with signed_in("admin", registry["admin"]):
        mlflow.MlflowClient(registry["uri"]).delete_run(real.info.run_id)
    erased = [r for r in trail_of(registry, failed) if r.get("ledger") == "reviewer"]
    assert erased and all(any("deleted" in f for f in r["flags"]) for r in erased)

    # the override is the approver's explicit, recorded choice
    forced = approve(registry, "manager", failed, "--decision", "approve", "--override-gate", "--note", "known eval bug")
    assert forced.returncode == 0, forced.stderr
    assert champion(registry) == failed
    last = [r for r in decisions(registry, failed) if r["identity"] == "manager"][-1]
    assert last["gate_overridden"] is True and last["ledger"] == "manager"


def test_two_approvals_at_once_each_see_the_champion_the_other_left(registry):
    """The champion is read and moved under one lock: two approvals started together leave records whose
    champions chain (the second's 'before' is the first's 'after'), and superseded_by names the true successor."""
    import mlflow

    with signed_in("admin", registry["admin"]):
        client = mlflow.MlflowClient(registry["uri"])
        a, b = (register_version(client, registry["experiment"], f"race-{i}", "admin") for i in range(2))
    env = {user: {**as_user(registry["uri"], user, PASSWORDS[user]), "BAYLING_ROOT": str(registry["project"])}
           for user in ("reviewer", "manager")}
    procs = [subprocess.Popen([sys.executable, "-m", "tools.approve", version, "--decision", "approve"], env=env[user],
                              cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for user, version in (("reviewer", a), ("manager", b))]
    outputs = [p.communicate(timeout=180) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    records = sorted((decisions(registry, v)[-1] for v in (a, b)), key=lambda r: r["at"])
    assert records[1]["previous_champion"] == records[0]["champion_after"] == records[0]["version"]
    assert champion(registry) == records[1]["version"]
    assert version_tags(registry, records[0]["version"])["superseded_by"] == records[1]["version"]


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
        #    the reviewer's ledger holds no such request, so the run refuses and records it
        with temporary_settings({PREFECT_API_URL: prefect_api}):
            resume_flow_run(paused["id"], run_input={"decision": "approve", "identity": "reviewer", "authenticated": True,
                                                     "challenge": challenge, "display_name": "forged", "request": "0" * 64})
        wait_for_pause(prefect_api, proc, key, seen)
        (refusal,) = [r for r in trail_of(registry, version) if r.get("kind") == "refused"]
        assert refusal["identity"] == "reviewer" and "ledger" in refusal["reason"] and not refusal["flags"]
        assert champion(registry) != version

        # 3. another MANAGE holder writes a real request into their own ledger, then resumes claiming the reviewer
        import mlflow

        from bayling.approvals import ledger
        from bayling.approvals.paused_run import request_record
        from bayling.register.mlflow_user import Identity

        challenge = version_tags(registry, version)["approval.challenge"]
        with signed_in("manager", PASSWORDS["manager"]):
            entry = ledger.append(mlflow.MlflowClient(registry["uri"]), MODEL, "manager", request_record(
                version, "approve", Identity("manager", True), challenge, paused["id"], "", "", False))
        with temporary_settings({PREFECT_API_URL: prefect_api}):
            resume_flow_run(paused["id"], run_input={"decision": "approve", "identity": "reviewer", "authenticated": True,
                                                     "challenge": challenge, "request": entry.sha256})
        wait_for_pause(prefect_api, proc, key, seen)
        refusals = [r for r in trail_of(registry, version) if r.get("kind") == "refused"]
        assert len(refusals) == 2 and "reviewer's own ledger" in refusals[-1]["reason"] and champion(registry) != version

        # 4. an input with no verifiable identity at all
        challenge = version_tags(registry, version)["approval.challenge"]
        with temporary_settings({PREFECT_API_URL: prefect_api}):
            resume_flow_run(paused["id"], run_input={"decision": "approve", "identity": "", "authenticated": False,
                                                     "challenge": challenge})
        wait_for_pause(prefect_api, proc, key, seen)
        assert len([r for r in trail_of(registry, version) if r.get("kind") == "refused"]) == 3

        # 5. the reviewer, through the tool: the run verifies the request and moves the champion; the tool waits for it
        done = approve(registry, "reviewer", version, "--decision", "approve", "--note", "checked the regressions",
                       extra_env={"PREFECT_API_URL": prefect_api})
        assert done.returncode == 0 and "verified and applied approve by reviewer" in done.stdout, (done.stdout, done.stderr)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output[-4000:]
    outcome = json.loads(output.split("OUTCOME ", 1)[1].splitlines()[0])
    assert outcome["decision"] == "approve" and outcome["reviewer"] == "reviewer"
    assert champion(registry) == version
    final = [r for r in decisions(registry, version) if r.get("kind") == "applied"][-1]
    assert final["identity"] == "reviewer" and final["authenticated"] is True and final["path"] == "paused-run"
    assert final["note"] == "checked the regressions" and final["ledger"] == "admin"
    request = [r for r in trail_of(registry, version) if r.get("kind") == "request" and r["ledger"] == "reviewer"]
    assert [r["sha256"] for r in request] == [final["request"]] and not request[0]["flags"]


def test_user_errors_of_the_tool_are_one_line_saying_what_is_wrong(registry):
    """Non-ASCII digits are not version numbers; no credentials is not a refusal of credentials; a server that is
    down is not a missing version."""
    from tests.servers import free_port

    for args in (("²", "--decision", "approve"), ("--history", "²"), ("٣", "--decision", "reject")):
        typed = approve(registry, "reviewer", *args)
        assert typed.returncode == 2 and "is not a version number" in typed.stderr and "Traceback" not in typed.stderr, typed.stderr
    anonymous = {k: v for k, v in as_user(registry["uri"], "reviewer", "x").items() if not k.startswith("MLFLOW_TRACKING_USER")
                 and k != "MLFLOW_TRACKING_PASSWORD"}
    anonymous["BAYLING_ROOT"] = str(registry["project"])
    for args in (("1", "--decision", "approve"), ("--history", "1")):
        done = subprocess.run([sys.executable, "-m", "tools.approve", *args], env=anonymous, cwd=Path(__file__).resolve().parents[2],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in done.stderr, done.stderr
        assert "refused the credentials" not in done.stderr and "has no version" not in done.stderr
    down = dict(anonymous, MLFLOW_TRACKING_URI=f"http://127.0.0.1:{free_port()}")
    done = subprocess.run([sys.executable, "-m", "tools.approve", "--history", "1"], env=down, cwd=Path(__file__).resolve().parents[2],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "cannot reach MLflow" in done.stderr and "has no version" not in done.stderr, done.stderr


def test_a_run_under_an_account_below_admin_refuses_and_the_approver_is_told(registry, prefect_api):
    """The README's table: the flow's account needs admin to verify an approver. A run under the editor (EDIT)
    refuses the reviewer's decision, records why, and tools.approve reports that refusal instead of success."""
    import mlflow

    with signed_in("admin", registry["admin"]):
        version = register_version(mlflow.MlflowClient(registry["uri"]), registry["experiment"], "editor-flow-files", "admin")
    register = {"model_name": MODEL, "approval": {"required": True, "timeout_s": 300}}
    registration = {"model_name": MODEL, "version": version, "run_id": "r", "gate": {"passed": True, "rules": []}}
    env = as_user(registry["uri"], "editor", PASSWORDS["editor"])
    env.update(PREFECT_API_URL=prefect_api, BAYLING_APPROVAL_POLL_S="1", BAYLING_ROOT=str(registry["project"]))
    proc = subprocess.Popen([sys.executable, "-c", FLOW, json.dumps(register), json.dumps(registration)],
                            cwd=Path(__file__).resolve().parents[2], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        wait_for_pause(prefect_api, proc, f"approval-{MODEL}-v{version}", set())
        told = approve(registry, "reviewer", version, "--decision", "approve", extra_env={"PREFECT_API_URL": prefect_api})
        assert told.returncode == 2 and "refused the decision" in told.stderr and "not an admin" in told.stderr, (told.stdout, told.stderr)
        assert "Traceback" not in told.stderr
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    refusal = [r for r in trail_of(registry, version) if r.get("kind") == "refused" and r["ledger"] == "editor"]
    assert refusal and "not an admin" in refusal[-1]["reason"]
