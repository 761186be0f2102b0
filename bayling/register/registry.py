"""Registering a fine-tuned model in the MLflow registry: one version per distinct model, with lineage tags."""

from __future__ import annotations

import logging
from dataclasses import dataclass
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
    model_sha256: str,
    run_id: str,
    tags: dict[str, str],
    creation_tags: dict[str, str] | None = None,
) -> Registration:
    """Log `model_dir` as a pyfunc translator in the active run and register it with all its tags in one
    call, or reuse the version already registered for the same model files and update only the tags
    whose values changed (`creation_tags`, such as who registered it, are written only on creation).
    The gate verdict and the alias are the caller's: see bayling.register.run."""
    import mlflow

    from bayling.register import serving

    client = mlflow.MlflowClient()
    wanted = {k: str(v)[:5000] for k, v in {**tags, MODEL_IDENTITY_TAG: model_sha256, "register_run_id": run_id}.items()}
    existing = find_version(client, model_name, model_sha256)
    if existing is not None:
        version, created, model_uri = existing.version, False, existing.source
        log.info("model files already registered as %s version %s; reusing it", model_name, version)
        current = existing.tags or {}
        for key, value in wanted.items():
            if current.get(key) != value:
                client.set_model_version_tag(model_name, version, key, value)
    else:
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=serving.__file__,
            artifacts={serving.HF_ARTIFACT: str(model_dir)},
            code_paths=[str(code_dir)],
            pip_requirements=pip_requirements(),
            signature=serving.signature(),
        )
        mv = mlflow.register_model(info.model_uri, model_name, tags={**wanted, **(creation_tags or {})})
        version, created, model_uri = mv.version, True, info.model_uri
    return Registration(model_name, str(version), "", run_id, created, model_uri)
