"""prefect.yaml against a real Prefect server: `prefect deploy`, the schedule read back, a run of the
deployment carried out by a process worker on the `bayling` pool, and `flows.serve` registering itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from servers import BIN

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def deployed(repo_root: Path, prefect_api: str, tmp_path_factory: pytest.TempPathFactory):
    from tools.smoke import make_copy

    work = tmp_path_factory.mktemp("deploy")
    project = work / "project"
    make_copy(repo_root, project, repo_root / "profiles" / "smoke.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "BAYLING_"))}
    env.update(PREFECT_API_URL=prefect_api, PREFECT_HOME=str(work / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}", PATH=f"{BIN}{os.pathsep}{env['PATH']}")

    def prefect(*args: str) -> subprocess.CompletedProcess:
        result = subprocess.run([str(BIN / "prefect"), *args], cwd=project, env=env, capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    pools = httpx.post(f"{prefect_api}/work_pools/filter", json={}, timeout=10).json()
    if "bayling" not in {p["name"] for p in pools}:
        prefect("work-pool", "create", "bayling", "--type", "process")
    deployed = prefect("--no-prompt", "deploy", "--all")
    return {"project": project, "env": env, "prefect": prefect, "output": deployed.stdout}


def read_deployment(api: str) -> dict:
    response = httpx.get(f"{api}/deployments/name/retrain/retrain", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_prefect_deploy_registers_the_weekly_schedule_on_the_work_pool(deployed: dict, prefect_api: str):
    deployment = read_deployment(prefect_api)
    (schedule,) = deployment["schedules"]
    assert schedule["schedule"]["cron"] == "0 3 * * 1" and schedule["schedule"]["timezone"] == "UTC"
    assert schedule["active"] is True
    assert deployment["work_pool_name"] == "bayling"
    assert deployment["entrypoint"] == "flows/retrain.py:retrain"
    assert deployment["parameters"] == {"force": False, "overrides": {}}
    assert set(deployment["tags"]) >= {"bayling", "retrain"}
    # the parameters a run may pass are the flow's own, checked by the server against this schema
    assert set(deployment["parameter_openapi_schema"]["properties"]) == {"stages", "force", "overrides", "wait_for_checkout_s"}
    # one run at a time: the others wait in the queue
    assert deployment["global_concurrency_limit"]["limit"] == 1


def test_a_process_worker_carries_out_a_run_of_the_deployment(deployed: dict, prefect_api: str):
    prefect = deployed["prefect"]
    created = prefect("deployment", "run", "retrain/retrain", "--param", 'stages=["base_model"]')
    assert "Created flow run" in created.stdout
    run_id = created.stdout.split("UUID:")[1].split()[0]
    worker = subprocess.run([str(BIN / "prefect"), "worker", "start", "--pool", "bayling", "--run-once"],
                            cwd=deployed["project"], env=deployed["env"], capture_output=True, text=True, timeout=300)
    assert worker.returncode == 0, worker.stdout[-4000:] + worker.stderr[-4000:]
    run = httpx.get(f"{prefect_api}/flow_runs/{run_id}", timeout=10).json()
    assert run["state"]["type"] == "COMPLETED", (run["state"], worker.stdout[-4000:], worker.stderr[-4000:])
    assert run["parameters"]["stages"] == ["base_model"]
    assert (deployed["project"] / "models" / "base" / "config.json").is_file()


def test_flows_serve_serves_the_deployment_from_its_own_process(deployed: dict, prefect_api: str):
    log = deployed["project"] / "serve.log"
    with open(log, "w") as handle:
        proc = subprocess.Popen([sys.executable, "-m", "flows.serve", "--cron", "30 4 * * 2"], cwd=deployed["project"],
                                env=deployed["env"], stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            deployment = read_deployment(prefect_api)
            crons = [s["schedule"].get("cron") for s in deployment["schedules"]]
            if "30 4 * * 2" in crons and deployment["work_pool_name"] is None:
                break
            assert proc.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, (crons, log.read_text()[-4000:])
            time.sleep(1)
        assert deployment["parameters"] == {"force": False, "overrides": {}}
        assert deployment["global_concurrency_limit"]["limit"] == 1
        # a served deployment answers with a heartbeat: the server sees it as ready
        deadline = time.monotonic() + 60
        while read_deployment(prefect_api)["status"] != "READY":
            assert time.monotonic() < deadline, read_deployment(prefect_api)["status"]
            time.sleep(1)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
