"""How a flow command ends: one exit code, with one meaning whichever flow it is.

    0    done: the flow finished (retrain ran, or found nothing to do; reproduce rebuilt bit for bit)
    1    failed: a stage or DVC command failed, or its retries ran out; reproduce also when the rebuild differs
    2    refused: a user or configuration error (`PipelineError`): bad arguments, params or overrides, an
         unreadable source or record, a checkout another run holds, Prefect's server not starting
    130  interrupted: Ctrl-C

Each refusal and failure is one `error:` message on stderr, never a traceback. Inside a flow a refusal is a
failed state named `Refused` (`refused`), so the command can tell it from a stage that failed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from bayling.core.errors import PipelineError
from flows.runtime.interruption import INTERRUPTION

if TYPE_CHECKING:
    from prefect.states import State

DONE = 0
FAILED = 1
REFUSED = 2
INTERRUPTED = 130
REFUSED_STATE = "Refused"


def refused(message: object) -> State:
    """The failed state a flow ends in for a user error (returned, not raised: Prefect would log a traceback)."""
    from prefect.states import Failed

    return Failed(message=str(message), name=REFUSED_STATE)


def exit_code(run: Callable[[], State], report: Callable[[State], int], interrupted: str = "interrupted") -> int:
    """Run a flow command's body (its checks, then its flow, whose final state it returns) and say how it ended.

    `report` prints a finished flow's outcome and gives its code; `interrupted` is what a bare Ctrl-C says."""
    try:
        state = run()
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return REFUSED
    except KeyboardInterrupt as exc:
        print(f"error: {str(exc) or interrupted}", file=sys.stderr)
        return INTERRUPTED
    if state.is_failed():
        print(f"error: {state.message}", file=sys.stderr)
        if INTERRUPTION.requested:
            return INTERRUPTED
        return REFUSED if state.name == REFUSED_STATE else FAILED
    return report(state)
