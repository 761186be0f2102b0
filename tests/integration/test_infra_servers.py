"""infra/mlflow/basic_auth.ini under a real `mlflow server --app-name basic-auth`: the admin comes from the
environment only, anonymous calls are refused, and the pipeline's client calls work with credentials
from MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import httpx
import pytest
from servers import mlflow_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def auth_server(repo_root: Path, tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("mlflow-auth")
    ini = (repo_root / "infra" / "mlflow" / "basic_auth.ini").read_text()
    # the compose file mounts a volume at /var/lib/mlflow-auth; here a temp folder stands in for it
    (work / "basic_auth.ini").write_text(ini.replace("sqlite:////var/lib/mlflow-auth/", f"sqlite:///{work}/"))
    password = "pw-" + secrets.token_hex(8)
    env = dict(os.environ, MLFLOW_AUTH_CONFIG_PATH=str(work / "basic_auth.ini"), MLFLOW_AUTH_ADMIN_USERNAME="admin",
               MLFLOW_AUTH_ADMIN_PASSWORD=password, MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(16))
    with mlflow_server(work / "server", env=env, extra_args=("--app-name", "basic-auth")) as uri:
        yield uri, password


def test_anonymous_and_wrong_password_calls_are_refused(auth_server):
    uri, password = auth_server
    search = f"{uri}/api/2.0/mlflow/experiments/search"
    assert httpx.post(search, json={"max_results": 1}, timeout=10).status_code == 401
    assert httpx.post(search, json={"max_results": 1}, auth=("admin", password + "x"), timeout=10).status_code == 401
    assert httpx.post(search, json={"max_results": 1}, auth=("admin", password), timeout=10).status_code == 200


def test_the_pipeline_client_works_with_credentials_from_the_environment(auth_server, monkeypatch, tmp_path: Path):
    import mlflow

    from bayling.core.tracking import configure

    uri, password = auth_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    experiment_id = configure(tmp_path, "bayling-auth")
    client = mlflow.MlflowClient()
    run = client.create_run(experiment_id, tags={"pipeline.stage": "register"})
    client.log_param(run.info.run_id, "register.model_name", "bayling-auth")
    client.create_registered_model("bayling-auth")
    version = client.create_model_version("bayling-auth", f"runs:/{run.info.run_id}/model", run.info.run_id)
    client.set_registered_model_alias("bayling-auth", "champion", version.version)
    assert client.get_model_version_by_alias("bayling-auth", "champion").version == version.version
    stored = client.get_run(run.info.run_id).data
    assert password not in repr(stored.params) + repr(stored.tags)
