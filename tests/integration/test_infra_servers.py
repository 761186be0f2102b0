"""infra/mlflow/basic_auth.ini under a real `mlflow server --app-name basic-auth`: the admin comes from the
environment only, anonymous calls are refused, and the pipeline's client calls work with credentials
from MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def auth_server(auth_mlflow):
    return auth_mlflow


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
