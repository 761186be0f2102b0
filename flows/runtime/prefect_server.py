"""The Prefect API a command-line run talks to: the server in PREFECT_API_URL, or Prefect's own
temporary (ephemeral) server, started here instead of lazily inside the flow for two reasons.

- Ctrl-C. Prefect starts the temporary server as a plain child process, so a terminal's Ctrl-C, which
  goes to the whole foreground process group, stops the server too; the interrupted flow then cannot
  record its own end and prints pages of connection errors. Started here with SIGINT blocked (the
  blocked mask survives exec, and uvicorn's handlers cannot receive a blocked signal), it stays up until
  the flow has said how it ended and Prefect stops it with SIGTERM at exit.
- Start-up failures. The server's own output goes to a log file, and a failure is one line naming it.

Prefect finds the running server through SubprocessASGIServer's per-port registry, which is where it
looks before starting one of its own.

`flow_session` is what a flow command runs its flow in: this API, with Ctrl-C handed to `INTERRUPTION`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from bayling.core.errors import PipelineError
from flows.runtime.interruption import INTERRUPTION

STARTUP_TIMEOUT_ENV = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
# The first start in a fresh PREFECT_HOME migrates a new database: 16 s on 2 idle cores, past Prefect's
# 20 s default as soon as anything else runs. Setting the variable above overrides this.
DEFAULT_STARTUP_TIMEOUT_S = 120


@contextlib.contextmanager
def prefect_api(log: Path) -> Iterator[str]:
    """Yield the API URL to use: PREFECT_API_URL when set, otherwise a temporary server started for this run."""
    configured = os.environ.get("PREFECT_API_URL")
    if configured:
        yield configured
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        with open(log, "ab") as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                server.start(timeout=None if STARTUP_TIMEOUT_ENV in os.environ else DEFAULT_STARTUP_TIMEOUT_S)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise PipelineError(f"Prefect's temporary API server did not start ({first}); its output is in {log}. "
                            "Set PREFECT_API_URL to a running Prefect server to use that instead") from None
    finally:
        for fd in saved:
            os.close(fd)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    # Prefect stops the server at exit, after its log and event workers have sent what they hold
    # (start() registered that with atexit before they registered their own drains).
    yield server.api_url


@contextlib.contextmanager
def flow_session(root: Path) -> Iterator[str]:
    """Run a flow from the command line: the first Ctrl-C lets the running stage stop by itself, and the API is
    `prefect_api`'s, a temporary server logging to `.bayling/prefect-server.log` under `root`."""
    signal.signal(signal.SIGINT, INTERRUPTION.handle)
    with prefect_api(root / ".bayling" / "prefect-server.log") as url:
        yield url
