"""A real PostgreSQL server for the tests: the one CUSTOMMSG_PG_URL names, or one tools/pgserver starts.

``.ci/run`` starts the server with tools/pgserver and exports CUSTOMMSG_PG_URL; a developer's
run without it starts its own for the session (and removes it at the end). Without the
server's binaries the tests that need it skip, naming what is missing; under CI
(``CI=true``) they fail instead: CI must run them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PGSERVER = ROOT / "tools" / "pgserver"
URL_ENV = "CUSTOMMSG_PG_URL"


def why_no_server() -> str | None:
    """Why tools/pgserver cannot start a server here (None: it can)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (make install brings it)"
    if not (shutil.which("initdb") or list(Path("/usr/lib/postgresql").glob("*/bin/initdb"))):
        return "no PostgreSQL server binaries (initdb) on PATH or under /usr/lib/postgresql: apt-get install postgresql"
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run the server as"
    return None


def unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required under CI: {reason}")
    pytest.skip(f"PostgreSQL: {reason}")


@contextmanager
def server() -> Iterator[tuple[str, str | None]]:
    """(URL, directory) of a server for the session: CUSTOMMSG_PG_URL's (no directory: not ours to stop),
    or one started in a fresh directory and removed afterwards."""
    given = os.environ.get(URL_ENV)
    if given:
        yield given, None
        return
    reason = why_no_server()
    if reason:
        unavailable(reason)
    directory = tempfile.mkdtemp(prefix="custommsg-pg-", dir="/var/tmp")
    try:
        url = subprocess.run([str(PGSERVER), "start", directory], check=True, capture_output=True,
                             text=True).stdout.strip()
        yield url, directory
    finally:
        subprocess.run([str(PGSERVER), "remove", directory], check=False, capture_output=True)


class OwnServer:
    """A PostgreSQL server of this test's own, to stop and start."""

    def __init__(self) -> None:
        reason = why_no_server()
        if reason:
            unavailable(reason)
        self.directory = tempfile.mkdtemp(prefix="custommsg-pg-", dir="/var/tmp")
        self.url = self._run("start")

    def _run(self, command: str) -> str:
        return subprocess.run([str(PGSERVER), command, self.directory], check=True, capture_output=True,
                              text=True).stdout.strip()

    def stop(self) -> None:
        self._run("stop")

    def start(self) -> None:
        self._run("start")

    def remove(self) -> None:
        try:
            self.resume()  # a test that failed while it was paused
        except OSError:
            pass
        self._run("remove")

    def _processes(self) -> list[int]:
        """The server's processes: the postmaster (its pid file's first line) and its children."""
        with open(os.path.join(self.directory, "data", "postmaster.pid")) as f:
            postmaster = int(f.readline())
        children = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        if int(f.read().rsplit(")", 1)[1].split()[1]) == postmaster:
                            children.append(int(entry))
                except (OSError, IndexError, ValueError):
                    pass
        return [postmaster, *children]

    def pause(self) -> None:
        """A silent server: every process stopped (SIGSTOP). The kernel still accepts connections and
        acknowledges what is sent; nothing answers."""
        for pid in self._processes():
            os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        for pid in self._processes():
            os.kill(pid, signal.SIGCONT)

    @contextmanager
    def silent(self, rescue_after: float) -> Iterator[None]:
        """Paused inside, resumed on leaving; resumed anyway after ``rescue_after`` seconds, so a plugin
        that waits on the server for ever fails its test instead of hanging it."""
        self.pause()
        rescue = threading.Timer(rescue_after, self.resume)
        rescue.start()
        try:
            yield
        finally:
            rescue.cancel()
            self.resume()



def fresh_schema() -> str:
    return f"t_{uuid.uuid4().hex[:16]}"


def drop_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def create_database(url: str) -> str:
    """A new empty database on the server; returns its URL."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{name}"')
    return url.rsplit("/", 1)[0] + "/" + name


def drop_database(url: str, database_url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        db.execute(f'DROP DATABASE IF EXISTS "{database_url.rsplit("/", 1)[1]}" WITH (FORCE)')
