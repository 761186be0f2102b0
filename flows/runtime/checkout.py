"""One pipeline run per checkout at a time.

Two retrain runs in one working tree would write params.yaml, the workspace outputs and the DVC
cache under each other. DVC's own lock covers a single `dvc repro`, not the pull, the -S overrides,
the stages in turn and the push that make up one run, so the flow holds this lock from its first step
to its last. It is an advisory `flock` on `.bayling/retrain.lock`: the kernel drops it when the
holder's process ends, so a killed run never leaves a stale lock behind. The file's content names the
holder for the refusal message only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bayling.core.errors import PipelineError

LOCK_FILE = Path(".bayling") / "retrain.lock"


def _holder(handle: Any) -> str:
    handle.seek(0)
    try:
        owner = json.loads(handle.read() or "{}")
    except json.JSONDecodeError:
        return "another process"
    parts = [f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}"]
    if owner.get("flow_run_id"):
        parts.append(f"flow run {owner['flow_run_id']}")
    if owner.get("since"):
        parts.append(f"since {owner['since']}")
    return ", ".join(parts)


@contextlib.contextmanager
def hold_checkout(root: Path, flow_run_id: str = "", wait_s: float = 0.0,
                  on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the checkout for one run, waiting up to `wait_s` seconds for another run to finish. `on_wait` hears,
    once, who holds it when this run starts to wait (a waiting run is otherwise silent)."""
    path = root / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as handle:
        deadline = time.monotonic() + wait_s
        told = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    waited = f" after waiting {wait_s:.0f}s" if wait_s else ""
                    raise PipelineError(f"another retrain run holds this checkout ({_holder(handle)}){waited}; wait for it to "
                                        "finish, or run in another clone") from None
                if on_wait is not None and not told:
                    on_wait(f"another retrain run holds this checkout ({_holder(handle)}); waiting up to {wait_s:.0f}s for it")
                    told = True
                time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "flow_run_id": flow_run_id,
                                     "since": datetime.now(UTC).isoformat(timespec="seconds")}))
            handle.flush()
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)
