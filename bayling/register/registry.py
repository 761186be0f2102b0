"""Registering a fine-tuned model in the MLflow registry: one version per distinct model, with lineage tags."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MODEL_IDENTITY_TAG = "model_sha256"


@dataclass(frozen=True)
class Registration:
    model_name: str
    version: str
    alias: str
    run_id: str
    created: bool
    model_uri: str


def find_version(client: Any, model_name: str, model_sha256: str) -> Any | None:
    """The existing version of `model_name` built from exactly these model files, if any."""
    # An unreachable server must raise here: treating it as "no match" could register a duplicate.
    versions = client.search_model_versions(f"name = '{model_name}'")
    matches = [v for v in versions if (v.tags or {}).get(MODEL_IDENTITY_TAG) == model_sha256]
    return max(matches, key=lambda v: int(v.version)) if matches else None


def pip_requirements() -> list[str]:
    from importlib.metadata import version

    pins = []
    for package in ("torch", "transformers", "tokenizers", "mlflow", "pandas"):
        try:
            pins.append(f"{package}=={version(package).split('+')[0]}")
        except Exception:
            pins.append(package)
    return pins


def register(
    *,
    model_dir: Path,
    code_dir: Path,
    model_name: str,
    alias: str | None,
    model_sha256: str,
    run_id: str,
    tags: dict[str, str],
) -> Registration:
    """Log `model_dir` as a pyfunc translator in the active run and register it, or reuse the version
    already registered for the same model files; refresh its tags and, unless `alias` is None (the gate
    failed), point the alias at it."""
    import mlflow

    from bayling.register import serving

    client = mlflow.MlflowClient()
    existing = find_version(client, model_name, model_sha256)
    if existing is not None:
        version, created, model_uri = existing.version, False, existing.source
        log.info("model files already registered as %s version %s; reusing it", model_name, version)
    else:
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=serving.__file__,
            artifacts={serving.HF_ARTIFACT: str(model_dir)},
            code_paths=[str(code_dir)],
            pip_requirements=pip_requirements(),
            signature=serving.signature(),
        )
        mv = mlflow.register_model(info.model_uri, model_name, tags={MODEL_IDENTITY_TAG: model_sha256})
        version, created, model_uri = mv.version, True, info.model_uri
    for key, value in {**tags, MODEL_IDENTITY_TAG: model_sha256, "register_run_id": run_id}.items():
        client.set_model_version_tag(model_name, version, key, str(value)[:5000])
    if alias:
        client.set_registered_model_alias(model_name, alias, version)
        client.set_model_version_tag(model_name, version, f"{alias}_at", datetime.now(UTC).isoformat(timespec="seconds"))
    return Registration(model_name, str(version), alias or "", run_id, created, model_uri)
