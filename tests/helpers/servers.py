"""Servers the tests start on loopback (`mlflow models serve`, `mlflow server`, `make serve`):
a free port, the wait for their first answer, and a stop that leaves no process behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# A server on 2 loaded cores has taken over a minute to import MLflow and answer.
START_TIMEOUT_S = 180.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_up(
    url: str, server: subprocess.Popen[bytes], log: Path, timeout_s: float = START_TIMEOUT_S
) -> None:
    """Return at the first 200 from `url`; AssertionError (with the log's end) when the server
    exits or `timeout_s` passes first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(
                f"{server.args!r} exited with {server.returncode}: {log.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"no answer from {url} within {timeout_s} s: {log.read_text()[-3000:]}")


def stop(server: subprocess.Popen[bytes], group: bool = False) -> None:
    """Stop a server (with `group`, the whole session it was started in with
    `start_new_session`, so the workers it forked too): SIGTERM, then SIGKILL after 20 s."""

    def send(signum: signal.Signals) -> None:
        if group:
            os.killpg(server.pid, signum)
        else:
            server.send_signal(signum)

    send(signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        server.wait(timeout=20)


@contextmanager
def mlflow_store(folder: Path, experiment: str) -> Iterator[str]:
    """A real MLflow SQLite store in `folder` (artefacts beside it) as this process's tracking
    URI, with `experiment` set; the previous URI restored after. Yields the store's URI."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    try:
        created = mlflow.create_experiment(experiment, artifact_location=str(folder / "art"))
        mlflow.set_experiment(experiment_id=created)
        yield uri
    finally:
        mlflow.set_tracking_uri(previous)


@contextmanager
def models_serve(model_uri: str, store: str, log: Path) -> Iterator[str]:
    """`mlflow models serve` of `model_uri` (read from `store`) on a free loopback port, one
    worker; yields its base URL once /ping answers and stops it after."""
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": store,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # the server starts `uvicorn` by name: the interpreter's own bin/ first on the PATH
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri]
    command += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    with log.open("wb") as sink:
        server = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
        try:
            wait_until_up(f"http://127.0.0.1:{port}/ping", server, log)
            yield f"http://127.0.0.1:{port}"
        finally:
            stop(server)
