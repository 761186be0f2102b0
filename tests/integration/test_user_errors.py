"""User errors at the flows' entry points end in one clear line and a non-zero exit, never a traceback:
S3 sources without credentials (against a real moto_server), and flows.reproduce given a --workdir that
is a file or a registered version whose logged dvc.lock is not YAML, or not a mapping.

Each test runs the flow as `python -m` in a smoke-profile copy of the project (a git repository, as
flows.reproduce needs for its clone) against the session's Prefect server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

SOURCE = "s3://user-errors/pairs/en-fr.tsv"


@pytest.fixture
def project(repo_root: Path, tmp_path: Path) -> Path:
    from tools.smoke import make_copy

    dest = tmp_path / "project"
    make_copy(repo_root, dest, repo_root / "profiles" / "smoke.yaml")
    return dest


def flow_env(project: Path, prefect_api: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_API", "AWS_"))}
    env.update(BAYLING_ROOT=str(project), PREFECT_API_URL=prefect_api, PREFECT_HOME=str(tmp_path / "prefect-home"),
               MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}")
    return env


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output[-6000:]
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_retrain_with_s3_sources_and_no_credentials_is_one_line(project: Path, prefect_api: str, s3_endpoint: str,
                                                                tmp_path: Path):
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    s3.create_bucket(Bucket="user-errors")
    s3.put_object(Bucket="user-errors", Key="pairs/en-fr.tsv", Body=b"Hello.\tBonjour.\n")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["fetch"]["sources"] = [{"name": "upstream", "format": "tsv", "uri": SOURCE, "columns": ["eng_Latn", "fra_Latn"]}]
    params["fetch"]["s3_endpoint_url"] = s3_endpoint
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = flow_env(project, prefect_api, tmp_path)
    # no credentials anywhere botocore looks: the environment, ~/.aws, the instance metadata service
    env.update(HOME=str(tmp_path), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
               AWS_CONFIG_FILE=str(tmp_path / "no-config"), AWS_EC2_METADATA_DISABLED="true", AWS_DEFAULT_REGION="us-east-1")

    result = subprocess.run([sys.executable, "-m", "flows.retrain"], cwd=project, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2  # refused: a source it cannot read is a user error (flows/runtime/exits.py)
    (error,) = error_lines(result)
    assert f"fetch.sources 'upstream': cannot read the version of {SOURCE}" in error
    assert "Unable to locate credentials" in error and "AWS_ACCESS_KEY_ID" in error and "AWS_PROFILE" in error


def register_with_lineage(client, project: Path, name: str, lock_text: str) -> str:
    """A version as the register stage leaves one (git commit and DVC out tags, dvc.lock and params.yaml logged
    under lineage/), with `lock_text` as its logged dvc.lock."""
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True, check=True).stdout.strip()
    experiment = client.get_experiment_by_name("user-errors") or client.get_experiment(client.create_experiment("user-errors"))
    run = client.create_run(experiment.experiment_id, run_name="register")
    client.log_text(run.info.run_id, lock_text, "lineage/dvc.lock")
    client.log_text(run.info.run_id, (project / "params.yaml").read_text(), "lineage/params.yaml")
    client.set_terminated(run.info.run_id)
    if client.search_registered_models(f"name = '{name}'") == []:
        client.create_registered_model(name)
    return client.create_model_version(name, f"runs:/{run.info.run_id}/lineage", run_id=run.info.run_id, tags={
        "git_commit": commit, "register_run_id": run.info.run_id, "dvc.data/raw.md5": "0" * 32 + ".dir"}).version


def reproduce(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.reproduce", *args], cwd=project, env=env, capture_output=True, text=True,
                          timeout=300)


def test_reproduce_into_a_workdir_that_is_a_file_is_one_line(project: Path, prefect_api: str, mlflow_uri: str, tmp_path: Path):
    import mlflow

    version = register_with_lineage(mlflow.MlflowClient(mlflow_uri), project, "user-errors-workdir",
                                    "schema: '2.0'\nstages:\n  fetch:\n    outs:\n    - path: data/raw\n      md5: " + "0" * 32 + ".dir\n")
    readme = project / "README.md"
    readme.write_text("a file, not a folder\n")
    env = dict(flow_env(project, prefect_api, tmp_path), MLFLOW_TRACKING_URI=mlflow_uri)
    result = reproduce(project, env, f"models:/user-errors-workdir/{version}", "--workdir", "README.md")
    assert result.returncode == 2
    (error,) = error_lines(result)
    assert f"--workdir {readme}" in error and "not a folder" in error
    assert readme.read_text() == "a file, not a folder\n"


@pytest.mark.parametrize("lock_text, problem", [
    ("schema: '2.0'\nstages:\n  fetch: [outs:\n    - path: data/raw\n", "is not valid YAML"),
    ("- schema\n- stages\n", "is a YAML list, not a mapping"),
], ids=["invalid YAML", "a YAML list"])
def test_reproduce_from_a_logged_dvc_lock_that_is_not_one_is_one_line(lock_text: str, problem: str, project: Path, prefect_api: str,
                                                                      mlflow_uri: str, tmp_path: Path):
    import mlflow

    name = "user-errors-lock-" + ("yaml" if "YAML list" not in problem else "list")
    version = register_with_lineage(mlflow.MlflowClient(mlflow_uri), project, name, lock_text)
    env = dict(flow_env(project, prefect_api, tmp_path), MLFLOW_TRACKING_URI=mlflow_uri)
    result = reproduce(project, env, f"models:/{name}/{version}")
    assert result.returncode == 2
    (error,) = error_lines(result)
    assert f"the dvc.lock logged with version {version}" in error and problem in error
    assert not list((project / ".cache" / "reproduce").iterdir())  # the clone went with the failure
