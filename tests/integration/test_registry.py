"""Registering against a real MLflow server: one version per distinct model, alias set, lineage tags."""

import pytest

from bayling.core.tracking import stage_run
from bayling.register import registry

pytestmark = pytest.mark.integration


def test_register_is_idempotent_per_model_files(tiny_model_dir, repo_root, mlflow_uri, monkeypatch, tmp_path):
    import mlflow

    from bayling.core.lineage import directory_sha256

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    sha = directory_sha256(tiny_model_dir)
    tag_calls: list[str] = []
    original = mlflow.MlflowClient.set_model_version_tag
    monkeypatch.setattr(mlflow.MlflowClient, "set_model_version_tag",
                        lambda self, name, version, key, value: tag_calls.append(key) or original(self, name, version, key, value))
    params = {f"params.section.key{i}": str(i) for i in range(180)}  # as many tags as a real registration carries
    results, calls = [], []
    for attempt in range(2):
        with stage_run(tmp_path, "register", "registry-test") as run:
            results.append(
                registry.register(
                    model_dir=tiny_model_dir, code_dir=repo_root / "bayling", model_name="registry-test-model",
                    model_sha256=sha, run_id=run.info.run_id, creation_tags={"registered_by": "someone"},
                    tags={"git_commit": "abc123", "dvc.models/final.md5": "feed.dir", "attempt": str(attempt), **params},
                )
            )
        calls.append(len(tag_calls))
    first, second = results
    assert first.created and not second.created
    assert first.version == second.version
    # every tag arrives with the new version in one call; re-use updates only what changed (attempt, run id)
    assert calls[0] == 0 and sorted(tag_calls) == ["attempt", "register_run_id"]
    client = mlflow.MlflowClient(mlflow_uri)
    version = client.get_model_version("registry-test-model", first.version)
    assert version.tags["registered_by"] == "someone" and version.tags["params.section.key179"] == "179"
    assert version.tags["git_commit"] == "abc123"
    assert version.tags["dvc.models/final.md5"] == "feed.dir"
    assert version.tags["attempt"] == "1"  # tags refreshed by the second registration
    assert version.tags[registry.MODEL_IDENTITY_TAG] == sha
    assert len(client.search_model_versions("name = 'registry-test-model'")) == 1


def test_registered_model_serves_translations(tiny_model_dir, repo_root, mlflow_uri, monkeypatch, tmp_path):
    """The pyfunc flavour loads back from the server and answers {text, src_lang, tgt_lang} rows."""
    import mlflow
    import pandas as pd

    from bayling.core.lineage import directory_sha256

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    with stage_run(tmp_path, "register", "registry-test") as run:
        reg = registry.register(
            model_dir=tiny_model_dir, code_dir=repo_root / "bayling", model_name="registry-serve-model",
            model_sha256=directory_sha256(tiny_model_dir), run_id=run.info.run_id, tags={},
        )
    model = mlflow.pyfunc.load_model(f"models:/registry-serve-model/{reg.version}")
    out = model.predict(
        pd.DataFrame([{"text": "Hello.", "src_lang": "eng_Latn", "tgt_lang": "fra_Latn"}] * 2),
        params={"max_new_tokens": 4},
    )
    assert reg.version == "1"
    assert len(out) == 2 and out[0] == out[1] and isinstance(out[0], str)
