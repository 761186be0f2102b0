"""infra/ checked against schemas: the compose file against the Compose Specification (as vendored by
check-jsonschema), the Kubernetes manifests against the Kubernetes 1.37 OpenAPI schemas (strict), and
every credential taken from the environment or a Secret, never written down."""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
KUBERNETES = "1.37.0"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|AUTH_STRING|ACCESS_KEY|TOKEN", re.IGNORECASE)


@pytest.fixture(scope="module")
def compose_schema() -> dict:
    schema = resources.files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json"
    return json.loads(schema.read_text("utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((INFRA / "docker-compose.yml").read_text("utf-8"))


def compose_errors(schema: dict, document: dict) -> list[str]:
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def test_compose_file_follows_the_compose_specification(compose_schema: dict, compose: dict):
    assert compose_errors(compose_schema, compose) == []
    broken = copy.deepcopy(compose)
    broken["services"]["mlflow"]["depends_on"]["postgres"]["condition"] = "service_ready"
    broken["services"]["worker"]["restart_policy"] = "always"
    errors = compose_errors(compose_schema, broken)  # the check can fail
    assert any(e.startswith("services/mlflow/depends_on") for e in errors)
    assert any("'restart_policy' was unexpected" in e for e in errors)


def test_compose_brings_up_every_service_the_pipeline_needs(compose: dict):
    services = compose["services"]
    assert set(services) == {"postgres", "minio", "minio-init", "mlflow", "prefect-server", "worker"}
    mlflow = services["mlflow"]
    assert "--app-name=basic-auth" in mlflow["command"]
    assert any(arg.startswith("--artifacts-destination=s3://") for arg in mlflow["command"])
    assert mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql://")
    assert services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    assert mlflow["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    worker = services["worker"]
    assert worker["build"]["dockerfile"] == "infra/Dockerfile"
    assert worker["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert worker["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    init = (INFRA / "postgres" / "init.sql").read_text()
    assert "CREATE DATABASE mlflow" in init and "CREATE DATABASE prefect" in init
    dockerfile = (INFRA / "Dockerfile").read_text()
    assert "prefect\", \"worker\", \"start\", \"--pool\", \"bayling\"" in dockerfile
    assert yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"][0]["work_pool"]["name"] == "bayling"


def environment_values(compose: dict) -> dict[str, str]:
    values = {}
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            values[f"{name}.{key}"] = str(value)
    for key, value in compose["x-pipeline-env"].items():
        values[f"x-pipeline-env.{key}"] = str(value)
    return values


def test_compose_credentials_come_only_from_the_environment(compose: dict):
    secrets = {k: v for k, v in environment_values(compose).items() if SECRET_NAME.search(k.split(".", 1)[1])}
    assert len(secrets) >= 10
    literal = {k: v for k, v in secrets.items() if not re.fullmatch(r"\$\{[A-Z0-9_]+(:\?[^}]*)?\}", v)}
    assert literal == {}
    # every variable the file interpolates is documented in .env.example, with a placeholder value
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", (INFRA / "docker-compose.yml").read_text()))
    example = dict(
        line.split("=", 1) for line in (INFRA / ".env.example").read_text().splitlines() if "=" in line and not line.startswith("#")
    )
    assert used <= set(example), used - set(example)
    assert all("change-me" in example[k] for k in example if SECRET_NAME.search(k) and "ACCESS_KEY" not in k)


def k8s_documents() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted((INFRA / "k8s").glob("*.yaml")):
        docs += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text("utf-8")) if doc]
    return docs


def as_pod(template: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "template", **template.get("metadata", {})}, "spec": template["spec"]}


def test_kubernetes_manifests_follow_the_schemas():
    kinds = []
    for _name, doc in k8s_documents():
        kinds.append(doc["kind"])
        if doc["kind"] == "PyTorchJob":
            # A CRD (Kubeflow training operator): its pod templates are core Pods, checked as such.
            assert doc["apiVersion"] == "kubeflow.org/v1"
            replicas = doc["spec"]["pytorchReplicaSpecs"]
            assert set(replicas) <= {"Master", "Worker"} and "Master" in replicas
            for spec in replicas.values():
                assert spec["restartPolicy"] in {"Always", "OnFailure", "Never", "ExitCode"}
                assert [c["name"] for c in spec["template"]["spec"]["containers"]][0] == "pytorch"  # the operator's name
                kubernetes_validate.validate(as_pod(spec["template"]), KUBERNETES, strict=True)
        else:
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    assert {"PyTorchJob", "Deployment", "PersistentVolumeClaim"} <= set(kinds)


def test_kubernetes_validation_can_fail():
    ((_, deployment),) = [(n, d) for n, d in k8s_documents() if d["kind"] == "Deployment"]
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["gpu"] = {"count": 1}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)


def test_kubernetes_credentials_come_only_from_secrets():
    checked = 0
    for name, doc in k8s_documents():
        spec = doc.get("spec", {})
        templates = [spec["template"]] if "template" in spec else [r["template"] for r in spec.get("pytorchReplicaSpecs", {}).values()]
        for template in templates:
            for container in template["spec"]["containers"]:
                for variable in container.get("env", []):
                    if SECRET_NAME.search(variable["name"]) or variable["name"].endswith(("USERNAME", "PASSWORD")):
                        checked += 1
                        assert "value" not in variable and "secretKeyRef" in variable["valueFrom"], (name, variable["name"])
    assert checked >= 8
