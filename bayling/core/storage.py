"""Reading inputs from a local path or an S3 URL, with their checksum and upstream version."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bayling.core.errors import PipelineError


@dataclass(frozen=True)
class FileInfo:
    uri: str
    origin: str  # "local" or "s3"
    sha256: str
    bytes: int
    etag: str | None = None


def sha256_of(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def split_s3_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise PipelineError(f"not an s3://bucket/key URL: {uri}")
    return bucket, key


S3_MAX_ATTEMPTS = 5


def s3_client(endpoint_url: str | None = None):  # type: ignore[no-untyped-def]
    """An S3 client with bounded retries (exponential backoff with jitter, botocore's standard mode)
    and timeouts, so an endpoint that is down or erroring fails clearly instead of hanging."""
    import boto3
    from botocore.config import Config

    config = Config(retries={"total_max_attempts": S3_MAX_ATTEMPTS, "mode": "standard"}, connect_timeout=5, read_timeout=60)
    # boto3 reads AWS_ENDPOINT_URL(_S3) itself; an explicit endpoint from params wins.
    return boto3.client("s3", endpoint_url=endpoint_url or None, config=config)


CREDENTIALS_HINT = ("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment, or AWS_PROFILE to a profile in "
                    "~/.aws/credentials")


def s3_failure(what: str, exc: Exception) -> PipelineError:
    """One line for a failed S3 request: missing credentials say how to give them (botocore never sent the
    request, so nothing was retried); anything else is what S3 or the connection said after the retries."""
    from botocore.exceptions import NoCredentialsError, PartialCredentialsError

    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return PipelineError(f"{what}: {exc}; {CREDENTIALS_HINT}")
    return PipelineError(f"{what} (after up to {S3_MAX_ATTEMPTS} attempts): {exc}")


@contextlib.contextmanager
def materialize(uri: str, *, root: Path, s3_endpoint_url: str | None = None) -> Iterator[tuple[Path, FileInfo]]:
    """Yield a local path holding the bytes of `uri` and its FileInfo; S3 objects go to a temp file."""
    if not uri.startswith("s3://"):
        path = (root / uri) if not os.path.isabs(uri) else Path(uri)
        if not path.is_file():
            raise PipelineError(f"input file not found: {uri}")
        yield path, FileInfo(uri=uri, origin="local", sha256=sha256_of(path), bytes=path.stat().st_size)
        return
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_s3_uri(uri)
    client = s3_client(s3_endpoint_url)
    with tempfile.TemporaryDirectory(prefix="bayling-fetch-") as tmp:
        local = Path(tmp) / "object"
        try:
            head = client.head_object(Bucket=bucket, Key=key)
            client.download_file(bucket, key, str(local))
        except (ClientError, BotoCoreError) as exc:
            raise s3_failure(f"cannot read {uri}", exc) from None
        yield local, FileInfo(
            uri=uri,
            origin="s3",
            sha256=sha256_of(local),
            bytes=local.stat().st_size,
            etag=str(head.get("ETag", "")).strip('"') or None,
        )


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_writer(path, binary=True) as handle:
        handle.write(data)


@contextlib.contextmanager
def atomic_writer(path: Path, binary: bool = False) -> Iterator[IO[Any]]:
    """A handle (text, UTF-8, or binary) whose content appears at `path` only if the block finishes without error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="\n")) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
