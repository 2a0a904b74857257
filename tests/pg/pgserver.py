"""A throwaway PostgreSQL server for the tests: initdb + postgres on a free loopback port.

PostgreSQL refuses to run as root (the CI and this lab run the suite as root), so there the
server runs as ``nobody``. pytest's temp dirs sit under ``/tmp/pytest-of-root``, which is
mode 0700 and reset to it by every pytest start, so ``nobody`` could never reach a data
directory inside one: as root the server gets its own ``mkdtemp`` directory, owned by
``nobody`` and removed when the server stops. As any other user, pytest's temp dir is used.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

SUPERUSER = "postgres"
# A zone far from UTC with a 45-minute offset: a datetime that loses or misapplies its
# timezone anywhere between Python and the column cannot round-trip by accident.
SERVER_TIMEZONE = "Pacific/Chatham"
START_TIMEOUT = 30.0


def _version(bindir: str) -> int:
    name = Path(bindir).parent.name
    return int(name) if name.isdigit() else 0


def find_bindir() -> Path | None:
    """The directory holding initdb/postgres/pg_ctl: $MULTISIGNER_PG_BINDIR if set (and
    then only it), else the newest Debian /usr/lib/postgresql/N/bin, else wherever initdb
    is on PATH."""
    chosen = os.environ.get("MULTISIGNER_PG_BINDIR")
    if chosen:
        candidates = [chosen]
    else:
        candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True)
        on_path = shutil.which("initdb")
        if on_path:
            candidates.append(str(Path(on_path).parent))
    for candidate in candidates:
        bindir = Path(candidate)
        if all(os.access(bindir / tool, os.X_OK) for tool in ("initdb", "postgres", "pg_ctl")):
            return bindir
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgServer:
    """One running server; every test database lives in it."""

    def __init__(self, bindir: Path, base: Path) -> None:
        self.bindir = bindir
        self.base = base
        self.data = base / "data"
        self.sockets = base / "sock"
        self.log = base / "postgres.log"
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._run_as: dict[str, Any] = {}
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            self._run_as = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}

    # -- lifecycle -------------------------------------------------------------------

    def _chown(self, path: Path) -> None:
        if self._run_as:
            os.chown(path, self._run_as["user"], self._run_as["group"])

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            capture_output=True, text=True, timeout=120, check=False, **self._run_as,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{args[0]} failed ({result.returncode}): {result.stdout}{result.stderr}"
            )

    def init(self) -> None:
        self._chown(self.base)
        self.sockets.mkdir()
        self._chown(self.sockets)
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "-A", "trust",
                  "-E", "UTF8", "--locale=C", "--no-sync")

    def start(self) -> None:
        """Start on a free port; another program can take the port between the probe and
        the bind, so a failed bind is retried on a new one."""
        last = ""
        for _attempt in range(5):
            self.port = free_port()
            with self.log.open("ab") as log:
                self._proc = subprocess.Popen(
                    [str(self.bindir / "postgres"), "-D", str(self.data),
                     "-p", str(self.port), "-k", str(self.sockets),
                     "-c", "listen_addresses=127.0.0.1",
                     "-c", f"timezone={SERVER_TIMEZONE}",
                     "-c", "log_timezone=UTC",
                     # A test server: durability buys nothing, speed does.
                     "-c", "fsync=off", "-c", "synchronous_commit=off",
                     "-c", "full_page_writes=off",
                     "-c", "max_connections=200"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    **self._run_as,
                )
            if self._wait_ready():
                return
            last = self.log.read_text(errors="replace")[-2000:]
            if "could not bind" not in last and "already in use" not in last:
                break
        raise RuntimeError(f"PostgreSQL did not start; its log ends with:\n{last}")

    def _wait_ready(self) -> bool:
        assert self._proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._proc = None
                return False
            try:
                psycopg.connect(self._dsn("postgres"), connect_timeout=2).close()
                return True
            except psycopg.OperationalError:
                time.sleep(0.05)
        self.stop()
        return False

    def stop(self) -> None:
        """Stop immediately (nothing in a test database is worth a clean shutdown)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            subprocess.run(
                [str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data), "-m", "immediate",
                 "-w", "-t", "30"],
                capture_output=True, timeout=60, check=False, **self._run_as,
            )
        finally:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)

    # -- databases -------------------------------------------------------------------

    def _dsn(self, dbname: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={dbname}"

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def connect(self, dbname: str) -> psycopg.Connection[Any]:
        """A plain autocommit psycopg connection, for looking behind the store's back."""
        return psycopg.connect(self._dsn(dbname), autocommit=True)

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:16]}"
        with self.connect("postgres") as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        # FORCE: a store a test forgot to close must not keep the database alive.
        with self.connect("postgres") as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def running_server(bindir: Path, pytest_tmp: Path) -> Iterator[PgServer]:
    """A started server, always stopped (and its private temp dir removed) on exit."""
    private = os.geteuid() == 0
    base = Path(tempfile.mkdtemp(prefix="multisigner-pg-")) if private else pytest_tmp
    server = PgServer(bindir, base)
    try:
        server.init()
        server.start()
        yield server
    finally:
        try:
            server.stop()
        finally:
            if private:
                shutil.rmtree(base, ignore_errors=True)
