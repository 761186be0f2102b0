"""Ctrl-C as the flows handle it: the running DVC command first gets the chance to stop by itself."""

from __future__ import annotations

import subprocess
import sys
from typing import Any


class Interruption:
    """Ctrl-C, as a terminal sends it: SIGINT to the whole foreground process group, so the DVC command
    and the stage it runs receive it too. The first one lets the running command stop by itself (the
    stage ends its MLflow run as failed, DVC keeps what finished) and the flow ends with the run marked
    KILLED; with no command running, or at a second Ctrl-C, the flow stops at once."""

    def __init__(self) -> None:
        self.requested = False
        self.child: subprocess.Popen | None = None

    def handle(self, signum: int, frame: Any) -> None:
        if self.requested or self.child is None or self.child.poll() is not None:
            raise KeyboardInterrupt
        self.requested = True
        print("interrupted: stopping the running stage (Ctrl-C again to stop at once)", file=sys.stderr, flush=True)


INTERRUPTION = Interruption()
