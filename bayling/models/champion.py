"""Looking up the current champion: the version that holds an alias, the predictions stored with it
(which evaluate compares the candidate against), and its model files (to regenerate those predictions
when the test sets have changed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

HF_ARTIFACT = "hf_model"  # the registered pyfunc model's artifact holding the Hugging Face directory


def alias_holder(client: Any, model_name: str, alias: str) -> Any | None:
    """The model version that holds `alias`, or None when no version (or no such model) does."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None


def champion_predictions(model_name: str, alias: str, dest: Path) -> tuple[str, Path | None] | None:
    """The version that holds `alias` and its stored predictions folder (None when it has none), or None
    when no version holds the alias."""
    import mlflow
    from botocore.exceptions import BotoCoreError, ClientError
    from mlflow.exceptions import MlflowException

    version = alias_holder(mlflow.MlflowClient(), model_name, alias)
    if version is None:
        return None
    run_id = (version.tags or {}).get("register_run_id") or version.run_id
    try:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="predictions", dst_path=str(dest))
    except (MlflowException, OSError, BotoCoreError, ClientError):
        return str(version.version), None
    return str(version.version), Path(local)


def champion_model(model_name: str, version: str, dest: Path) -> Path:
    """Download a registered version's Hugging Face model directory.

    MLflow copies a pyfunc artifact under the name of its source folder, not its key: the MLmodel
    file maps the key to where it went.
    """
    import mlflow
    from mlflow.models import Model

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{model_name}/{version}", dst_path=str(dest)))
    artifacts = Model.load(str(local)).flavors["python_function"]["artifacts"]
    return local / artifacts[HF_ARTIFACT]["path"]
