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
def mlflow_server(workdir: Path, artifacts_destination: str | None = None, env: dict[str, str] | None = None,
                  extra_args: tuple[str, ...] = ()) -> Iterator[str]:
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(BIN / "mlflow"), "server",
        "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
        "--artifacts-destination", artifacts_destination or str(workdir / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1", *extra_args,
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


@contextmanager
def prefect_server(workdir: Path) -> Iterator[str]:
    """`prefect server start` with its own sqlite database and PREFECT_HOME; yields the API URL."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(
        os.environ,
        PREFECT_HOME=str(workdir),
        PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{workdir / 'prefect.db'}",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
    )
    env.pop("PREFECT_API_URL", None)
    cmd = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with running(cmd, f"http://127.0.0.1:{port}/api/health", workdir / "prefect-server.log", env):
        yield f"http://127.0.0.1:{port}/api"


class FailingS3:
    """An S3 endpoint that answers every request with 503 SlowDown, counting what it was asked."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        requests: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def _fail(self) -> None:
                requests.append(f"{self.command} {self.path}")
                # A client that sent `Expect: 100-continue` holds its body back until told to go on; like S3,
                # answer at once and drop the connection instead of waiting for a body that never comes.
                length = int(self.headers.get("Content-Length") or 0)
                if length and self.headers.get("Expect", "").lower() != "100-continue":
                    self.rfile.read(length)
                body = b"<?xml version='1.0'?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
                self.close_connection = True
                try:
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(body) if self.command != "HEAD" else 0))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _fail

            def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
                pass

        self.requests = requests
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FailingS3:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
