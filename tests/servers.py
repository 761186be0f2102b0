"""Real servers for tests: started on free loopback ports, stopped by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except Exception:
            time.sleep(0.3)
    raise RuntimeError(f"server at {url} not ready after {timeout}s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    """Stop the server's whole process group (mlflow forks workers) by PID."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


@contextmanager
def running(cmd: list[str], ready_url: str, log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    with open(log, "wb") as handle:
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        wait_for(ready_url, proc, log)
        yield proc
    finally:
        stop(proc)


@contextmanager
def mlflow_server(workdir: Path, artifacts_destination: str | None = None, env: dict[str, str] | None = None) -> Iterator[str]:
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(BIN / "mlflow"), "server",
        "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
        "--artifacts-destination", artifacts_destination or str(workdir / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]
    server_env = dict(env or os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    with running(cmd, f"http://127.0.0.1:{port}/health", workdir / "mlflow-server.log", server_env):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def moto_server(workdir: Path) -> Iterator[str]:
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    with running(cmd, f"http://127.0.0.1:{port}/", workdir / "moto-server.log"):
        yield f"http://127.0.0.1:{port}"
