"""Upstream versions of the corpus sources (S3 ETag or sha256) and params overrides, for scheduled runs
that must skip when nothing changed and for `-S key=value` overrides like `dvc exp run -S`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bayling.errors import PipelineError


def current_versions(fetch: Any, root: Path) -> dict[str, str]:
    """{uri: "etag:<etag>" for S3 objects, "sha256:<digest>" for local files}, without downloading S3 data."""
    from bayling.storage import s3_client, sha256_of, split_s3_uri

    versions = {}
    for source in fetch.sources:
        for uri in source.uris():
            if uri.startswith("s3://"):
                bucket, key = split_s3_uri(uri)
                head = s3_client(fetch.s3_endpoint_url).head_object(Bucket=bucket, Key=key)
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
            versions[info["uri"]] = f"etag:{info['etag']}" if info.get("origin") == "s3" and info.get("etag") else f"sha256:{info['sha256']}"
    return versions


def changed_sources(current: dict[str, str], recorded: dict[str, str]) -> list[str]:
    return sorted(uri for uri in set(current) | set(recorded) if current.get(uri) != recorded.get(uri))


def parse_override(text: str) -> tuple[list[str], Any]:
    """'train.max_steps=10' -> (['train', 'max_steps'], 10); the value is read as YAML."""
    import yaml

    if "=" not in text:
        raise PipelineError(f"override '{text}' must look like section.key=value")
    key, raw = text.split("=", 1)
    path = [part for part in key.strip().split(".") if part]
    if len(path) < 2:
        raise PipelineError(f"override '{text}': name a section and a key, e.g. train.max_steps=10")
    return path, yaml.safe_load(raw)


def apply_overrides(params_file: Path, overrides: dict[str, Any]) -> None:
    """Write overrides into params.yaml in place, keeping its comments and layout (as dvc exp run -S does)."""
    from ruamel.yaml import YAML

    if not overrides:
        return
    yaml = YAML()
    yaml.preserve_quotes = True
    data = yaml.load(params_file.read_text("utf-8"))
    for key, value in overrides.items():
        path = key.split(".")
        node = data
        for part in path[:-1]:
            if part not in node or not hasattr(node[part], "keys"):
                raise PipelineError(f"override {key}: params.yaml has no section {'.'.join(path[:path.index(part) + 1])}")
            node = node[part]
        node[path[-1]] = value
    with open(params_file, "w", encoding="utf-8") as handle:
        yaml.dump(data, handle)
