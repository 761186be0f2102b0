"""Crash-safe checkpoints: a checkpoint counts only once its marker is written, after everything else,
and only for the configuration that wrote it. A re-run resumes from the newest such checkpoint and
clears away incomplete or foreign ones."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

MARKER = "COMPLETE"
_STEP = re.compile(r"^checkpoint-(\d+)$")


def config_hash(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def checkpoints(directory: Path) -> list[tuple[int, Path]]:
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if p.is_dir() and (m := _STEP.match(p.name))]
    return sorted(found)


def is_complete(checkpoint: Path, expected_hash: str) -> bool:
    marker = checkpoint / MARKER
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text("utf-8")).get("config_hash") == expected_hash
    except (json.JSONDecodeError, OSError):
        return False


def mark_complete(checkpoint: Path, expected_hash: str, step: int) -> None:
    """Write the marker last, atomically: a crash before this leaves the checkpoint incomplete."""
    tmp = checkpoint / f".{MARKER}.tmp"
    tmp.write_text(json.dumps({"config_hash": expected_hash, "step": step}) + "\n", "utf-8")
    tmp.replace(checkpoint / MARKER)


def newest_complete(directory: Path, expected_hash: str, before_step: int | None = None) -> Path | None:
    """The newest complete checkpoint of this configuration, optionally only among those before a step.

    Resuming needs `before_step=max_steps`: the Trainer takes one more step after resuming even from
    the last step, so a re-run restarts from the last checkpoint before the end and lands on the
    same weights deterministically.
    """
    for step, path in reversed(checkpoints(directory)):
        if (before_step is None or step < before_step) and is_complete(path, expected_hash):
            return path
    return None


def prune(directory: Path, expected_hash: str) -> list[Path]:
    """Delete checkpoints that are incomplete or belong to another configuration; return what went."""
    removed = []
    for _, path in checkpoints(directory):
        if not is_complete(path, expected_hash):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def make_checkpoint_marker(expected_hash: str) -> Any:
    """A TrainerCallback that writes the completion marker into each checkpoint after it is saved."""
    from transformers import TrainerCallback

    class CheckpointMarker(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.is_world_process_zero:
                path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if path.is_dir():
                    mark_complete(path, expected_hash, state.global_step)

    return CheckpointMarker()
