"""A throwaway PostgreSQL server on loopback for the tests of the scale-out paths.

`tools/ci_postgres.sh` makes Debian's server binaries available (apt-get when missing); this
module creates a cluster in a temporary folder with `initdb`, starts it with `pg_ctl` on a free
127.0.0.1 port (no system service, no password: trust on loopback only) and removes it on exit.
PostgreSQL refuses to run as root, so under root the cluster belongs to the `postgres` user the
Debian package creates. A missing server is an error with the reason, never a skipped test.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from helpers.servers import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = PROJECT_ROOT / "tools" / "ci_postgres.sh"
SUPERUSER = "targeting"
DATABASE = "targeting"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL could not be installed or started; the message says why."""


def server_binaries() -> Path:
    """The folder of initdb/pg_ctl, installing the Debian packages first when they are missing."""
    done = subprocess.run(
        ["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise PostgresUnavailable(
            f"{INSTALL_SCRIPT.name} could not provide PostgreSQL (exit {done.returncode}): "
            f"{done.stderr.strip()[-2000:]}"
        )
    return Path(done.stdout.strip().splitlines()[-1])


def _as_server_user(command: list[str]) -> list[str]:
    """Run as `postgres` when we are root (the server refuses root), else as ourselves."""
    if os.geteuid() != 0:
        return command
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable(
            "running as root and there is no 'postgres' user to own the cluster "
            "(Debian's postgresql package creates it)"
        ) from None
    return ["runuser", "-u", "postgres", "--", *command]


def _run(command: list[str], what: str, timeout: float = 120) -> None:
    done = subprocess.run(
        _as_server_user(command), capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise PostgresUnavailable(
            f"{what} failed (exit {done.returncode}): {(done.stdout + done.stderr).strip()[-2000:]}"
        )


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a fresh PostgreSQL cluster on loopback; yields its SQLAlchemy URL (psycopg2)."""
    binaries = server_binaries()
    folder = Path(tempfile.mkdtemp(prefix="customs-pg-"))
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    data = folder / "data"
    port = free_port()
    started = False
    try:
        _run(
            [
                str(binaries / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            "initdb",
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={folder} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        _run(
            [
                str(binaries / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(folder / "server.log"),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ],
            "pg_ctl start",
        )
        started = True
        _run(
            [
                str(binaries / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                SUPERUSER,
                DATABASE,
            ],
            "createdb",
        )
        yield f"postgresql+psycopg2://{SUPERUSER}@127.0.0.1:{port}/{DATABASE}"
    finally:
        if started:
            _run(
                [str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                "pg_ctl stop",
            )
        shutil.rmtree(folder, ignore_errors=True)
