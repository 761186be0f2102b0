"""Looking up the current champion: the version that holds an alias, and the predictions stored with it
(which evaluate compares the candidate against)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def alias_holder(client: Any, model_name: str, alias: str) -> Any | None:
    """The model version that holds `alias`, or None when no version (or no such model) does."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None


def champion_predictions(model_name: str, alias: str, dest: Path) -> tuple[str, Path] | None:
    """Download the predictions stored with the version that holds `alias`: (version, folder) or None."""
    import mlflow
    from mlflow.exceptions import MlflowException

    version = alias_holder(mlflow.MlflowClient(), model_name, alias)
    if version is None:
        return None
    run_id = (version.tags or {}).get("register_run_id") or version.run_id
    try:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="predictions", dst_path=str(dest))
    except (MlflowException, OSError):
        return None
    return str(version.version), Path(local)
