"""Upstream source versions, for skipping unchanged scheduled runs."""

import hashlib
import os

from bayling.config.fetch import FetchParams
from bayling.fetch.versions import changed_sources, current_versions, recorded_versions


def test_local_versions_are_content_hashes_and_changes_are_seen(tmp_path):
    (tmp_path / "a.txt").write_text("hello\n")
    (tmp_path / "b.txt").write_text("bonjour\n")
    fetch = FetchParams.model_validate(
        {"sources": [{"name": "s", "format": "parallel", "files": {"eng_Latn": "a.txt", "fra_Latn": "b.txt"}}]}
    )
    current = current_versions(fetch, tmp_path)
    assert current["a.txt"] == "sha256:" + hashlib.sha256(b"hello\n").hexdigest()
    manifest = {
        "inputs": [
            {
                "files": [
                    {"uri": "a.txt", "origin": "local", "sha256": hashlib.sha256(b"hello\n").hexdigest()},
                    {"uri": "b.txt", "origin": "local", "sha256": "0" * 64},
                ]
            }
        ]
    }
    assert changed_sources(current, recorded_versions(manifest)) == ["b.txt"]
    (tmp_path / "b.txt").unlink()
    assert current_versions(fetch, tmp_path)["b.txt"] == "missing"


def test_s3_versions_are_etags_without_downloading(s3_env, tmp_path):
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_env)
    s3.create_bucket(Bucket="upstream-versions")
    s3.put_object(Bucket="upstream-versions", Key="c.tsv", Body=b"hello\tbonjour\n")
    fetch = FetchParams.model_validate(
        {
            "s3_endpoint_url": s3_env,
            "sources": [{"name": "s", "format": "tsv", "uri": "s3://upstream-versions/c.tsv", "columns": ["eng_Latn", "fra_Latn"]}],
        }
    )
    before = current_versions(fetch, tmp_path)["s3://upstream-versions/c.tsv"]
    etag = s3.head_object(Bucket="upstream-versions", Key="c.tsv")["ETag"].strip('"')
    assert before == f"etag:{etag}"
    recorded = recorded_versions(
        {"inputs": [{"files": [{"uri": "s3://upstream-versions/c.tsv", "origin": "s3", "etag": etag, "sha256": "x"}]}]}
    )
    assert changed_sources({"s3://upstream-versions/c.tsv": before}, recorded) == []
    s3.put_object(Bucket="upstream-versions", Key="c.tsv", Body=b"hello\tsalut\n")
    after = current_versions(fetch, tmp_path)["s3://upstream-versions/c.tsv"]
    assert changed_sources({"s3://upstream-versions/c.tsv": after}, recorded) == ["s3://upstream-versions/c.tsv"]


def test_s3_versions_without_credentials_are_one_line_naming_the_source(s3_endpoint, tmp_path, monkeypatch):
    import boto3
    import pytest

    from bayling.core.errors import PipelineError

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    s3.create_bucket(Bucket="upstream-no-credentials")
    s3.put_object(Bucket="upstream-no-credentials", Key="c.tsv", Body=b"hello\tbonjour\n")
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    # nor from ~/.aws or the instance metadata service: botocore would look there next
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # it keeps the credentials an earlier test's client found
    fetch = FetchParams.model_validate(
        {
            "s3_endpoint_url": s3_endpoint,
            "sources": [{"name": "upstream", "format": "tsv", "uri": "s3://upstream-no-credentials/c.tsv",
                         "columns": ["eng_Latn", "fra_Latn"]}],
        }
    )
    with pytest.raises(PipelineError) as raised:
        current_versions(fetch, tmp_path)
    message = str(raised.value)
    assert "\n" not in message
    assert "fetch.sources 'upstream'" in message and "s3://upstream-no-credentials/c.tsv" in message
    assert "Unable to locate credentials" in message and "AWS_ACCESS_KEY_ID" in message and "AWS_PROFILE" in message
