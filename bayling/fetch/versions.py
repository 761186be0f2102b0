"""Upstream versions of the corpus sources (S3 ETag or sha256, read without downloading), so a scheduled
run can tell whether anything changed since the last fetch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bayling.config.fetch import FetchParams


def current_versions(fetch: FetchParams, root: Path) -> dict[str, str]:
    """{uri: "etag:<etag>" for S3 objects, "sha256:<digest>" for local files}, without downloading S3 data."""
    from botocore.exceptions import BotoCoreError, ClientError

    from bayling.core.storage import s3_client, s3_failure, sha256_of, split_s3_uri

    versions = {}
    client = None
    for source in fetch.sources:
        for uri in source.uris():
            if uri.startswith("s3://"):
                bucket, key = split_s3_uri(uri)
                client = client or s3_client(fetch.s3_endpoint_url)
                try:
                    head = client.head_object(Bucket=bucket, Key=key)
                except (ClientError, BotoCoreError) as exc:
                    raise s3_failure(f"fetch.sources '{source.name}': cannot read the version of {uri}", exc) from None
                versions[uri] = f"etag:{str(head['ETag']).strip(chr(34))}"
            else:
                path = root / uri
                versions[uri] = f"sha256:{sha256_of(path)}" if path.is_file() else "missing"
    return versions


def recorded_versions(manifest: dict[str, Any]) -> dict[str, str]:
    """The same view of the inputs the last fetch actually read, from data/raw/manifest.json."""
    versions = {}
    for source in manifest.get("inputs", []):
        for info in source.get("files", []):
            versions[info["uri"]] = (
                f"etag:{info['etag']}" if info.get("origin") == "s3" and info.get("etag") else f"sha256:{info['sha256']}"
            )
    return versions


def changed_sources(current: dict[str, str], recorded: dict[str, str]) -> list[str]:
    return sorted(uri for uri in set(current) | set(recorded) if current.get(uri) != recorded.get(uri))
