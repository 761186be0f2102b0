"""Where the project is: BAYLING_ROOT when a flow or test sets it, otherwise the working directory."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    return Path(os.environ.get("BAYLING_ROOT", ".")).resolve()


def resolve(path: str | Path, root: Path) -> Path:
    """A path from params.yaml: absolute as given, otherwise relative to the project root."""
    path = Path(path)
    return path if path.is_absolute() else root / path
