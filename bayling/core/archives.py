"""Test data that must not be re-hosted as plain text (FLORES-200) is committed as a tar archive and
unpacked on demand into an ignored cache folder, keyed by the archive's content hash.

Extraction uses tarfile's "data" filter, so an archive cannot write outside its folder, create links
out of it or device files. A folder is renamed into place only when complete, so a stage killed half
way, or two stages unpacking at once, never leave a partial copy that a later run would trust.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from bayling.core.errors import PipelineError

UNPACK_FOLDER = ".cache/unpacked"


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def unpacked(archive: Path, cache_root: Path) -> Path:
    """The folder holding the archive's contents: cache_root/<archive stem>-<md5 prefix>, unpacked once."""
    if not archive.is_file():
        raise PipelineError(f"archive {archive}: file not found")
    stem = archive.name.split(".", 1)[0]
    target = cache_root / f"{stem}-{file_md5(archive)[:12]}"
    if target.is_dir():
        return target
    cache_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{stem}-", dir=cache_root))
    try:
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(staging, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise PipelineError(f"archive {archive}: cannot be unpacked ({exc})") from None
        try:
            os.rename(staging, target)
        except OSError:
            if not target.is_dir():  # not a concurrent unpack that finished first
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def data_root(archive: str | None, root: Path) -> Path:
    """Where a data set's relative paths start: the project root, or the unpacked archive's folder."""
    if archive is None:
        return root
    path = Path(archive)
    return unpacked(path if path.is_absolute() else root / path, root / UNPACK_FOLDER)
