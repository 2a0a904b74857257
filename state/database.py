"""Connections, transactions and migrations for the state database.

Two kinds of transaction:

* ``read()``: a plain (deferred) transaction. On SQLite in WAL mode it reads a consistent
  snapshot without blocking writers.
* ``write()``: serialized against every other writer, in this process or another. On
  SQLite it starts with ``BEGIN IMMEDIATE`` (the write lock is taken up front, so two
  writers never read the same history tail and fork the chain; the busy timeout makes the
  second one wait instead of failing). On PostgreSQL it takes a transaction-scoped advisory
  lock, which, unlike ``SELECT ... FOR UPDATE``, also works while the history is empty;
  ``lock_timeout`` bounds the wait by the same busy timeout, so a controller stuck inside a
  write makes the others fail with a clear error instead of hanging without limit.

pysqlite's own transaction handling is switched off (``isolation_level = None``) so that
SQLAlchemy's ``begin`` event can emit the BEGIN itself, which is the documented way to get
real transactions (including transactional DDL for migrations) on Python < 3.12.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import StaticPool
from sqlmodel import Session

from core.errors import StateError
from core.state_url import parse_url, redact_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Arbitrary constant identifying multisigner's write lock among PostgreSQL advisory locks.
_PG_LOCK_KEY = 0x6D756C7469  # "multi"
_IMMEDIATE = "multisigner_immediate"
_HINT = "set [state] url to a reachable database, e.g. sqlite:///multisigner.db"


def _is_memory(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def _check_sqlite_path(url: URL, shown: str) -> None:
    """Fail early, with a useful message, on a path SQLite could not write."""
    assert url.database
    path = Path(url.database).expanduser()
    directory = path.parent if str(path.parent) else Path()
    if not directory.is_dir():
        raise StateError(
            f"state database {shown}: directory {directory} does not exist; create it or {_HINT}"
        )
    target = path if path.exists() else directory
    if not os.access(target, os.W_OK):
        raise StateError(
            f"state database {shown}: {target} is not writable by this user; fix its "
            f"permissions or {_HINT}"
        )


_REVISION_LINE = re.compile(r'^(down_revision|revision)\b[^=]*=\s*(?:"([^"]*)"|None)', re.M)


@cache
def head_revision() -> str:
    """The newest migration's revision id, read from the migration files themselves (the one
    no other migration names as its ``down_revision``) without importing alembic;
    tests/unit/test_cli_imports.py checks it agrees with alembic's own head."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        for kind, value in _REVISION_LINE.findall(path.read_text()):
            if value:
                (revisions if kind == "revision" else parents).add(value)
    heads = revisions - parents
    if len(heads) != 1:
        raise StateError(f"the state migrations in {MIGRATIONS_DIR} have {len(heads)} heads "
                         f"({', '.join(sorted(heads)) or 'none'}); a release has exactly one")
    return heads.pop()


class Database:
    """An engine plus the transaction discipline described in the module docstring."""

    def __init__(self, url: str, *, busy_timeout: float = 30.0) -> None:
        try:
            parsed = parse_url(url)
        except StateError as exc:
            raise StateError(f"state database URL {exc}") from None
        self.raw_url = url
        self.busy_timeout = busy_timeout
        # Never put a password into messages or logs.
        self.url = parsed.render_as_string(hide_password=True)
        self.dialect = parsed.get_backend_name()
        self.memory = _is_memory(parsed)
        kwargs: dict[str, Any] = {}
        if self.dialect == "sqlite":
            connect_args: dict[str, Any] = {"check_same_thread": False}
            if self.memory:
                # One connection for the life of the store, or every checkout would see
                # a fresh, empty (unmigrated) in-memory database.
                kwargs["poolclass"] = StaticPool
            else:
                _check_sqlite_path(parsed, self.url)
                connect_args["timeout"] = busy_timeout
            kwargs["connect_args"] = connect_args
        elif self.dialect == "postgresql":
            if parsed.drivername == "postgresql":
                # SQLAlchemy < 2.1 would pick psycopg2 for a bare postgresql://, which is
                # not the driver the ``postgres`` extra installs.
                parsed = parsed.set(drivername="postgresql+psycopg")
            # Controllers hold pooled connections for days; a server restart or failover
            # kills them all, and without a liveness check the next step of every zone
            # would fail on a dead connection.
            kwargs["pool_pre_ping"] = True
        else:
            raise StateError(
                f"state database {self.url}: backend {self.dialect!r} is not supported; "
                "use sqlite:///PATH or postgresql+psycopg://..."
            )
        try:
            self.engine: Engine = create_engine(parsed, **kwargs)
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            driver = (
                "pip install 'multisigner[postgres]'"
                if self.dialect == "postgresql"
                else "install the database driver"
            )
            raise StateError(
                f"state database {self.url}: cannot create an engine "
                f"({redact_url(str(exc))}); {driver} or {_HINT}"
            ) from None
        self.write_engine: Engine = self.engine.execution_options(**{_IMMEDIATE: True})
        # The in-memory database is a single shared connection: serialize its users.
        self._memory_lock = threading.RLock() if self.memory else None
        if self.dialect == "sqlite":
            self._install_sqlite_hooks(busy_timeout)

    def _install_sqlite_hooks(self, busy_timeout: float) -> None:
        memory = self.memory

        @event.listens_for(self.engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
            cursor = dbapi_connection.cursor()
            try:
                if not memory:
                    # WAL: readers never block the writer and vice versa.
                    cursor.execute("PRAGMA journal_mode=WAL")
                    cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            finally:
                cursor.close()

        @event.listens_for(self.engine, "begin")
        def _on_begin(conn: Connection) -> None:
            immediate = conn.get_execution_options().get(_IMMEDIATE, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    def _guard(self) -> threading.RLock | nullcontext[None]:
        return self._memory_lock if self._memory_lock is not None else nullcontext()

    def _serialize(self, conn: Connection) -> None:
        if self.dialect == "postgresql":
            conn.execute(
                text("SELECT set_config('lock_timeout', :ms, true)"),
                {"ms": f"{max(1, int(self.busy_timeout * 1000))}ms"},
            )
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})

    def _fail(self, exc: SQLAlchemyError) -> StateError:
        orig = getattr(exc, "orig", None)
        detail = redact_url(str(orig) if orig is not None else str(exc))
        first = detail.splitlines()[0] if detail else type(exc).__name__
        if "locked" in first or "busy" in first or "lock timeout" in first:
            advice = (
                f"another writer held it for more than the busy timeout ({self.busy_timeout:g}s)"
                "; retry, and check that no other program keeps the database open for writing"
            )
        else:
            advice = (
                "check that the database is reachable and migrated "
                "(StateStore.open runs the migrations)"
            )
        return StateError(f"state database {self.url}: {first}; {advice}")

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._guard(), Session(self.engine, expire_on_commit=False) as session:
            try:
                with session.begin():
                    yield session
            except SQLAlchemyError as exc:
                raise self._fail(exc) from exc

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One serialized transaction: committed on success, rolled back on any error."""
        with self._guard(), Session(self.write_engine, expire_on_commit=False) as session:
            try:
                with session.begin():
                    self._serialize(session.connection())
                    yield session
            except SQLAlchemyError as exc:
                raise self._fail(exc) from exc

    def at_head(self) -> bool:
        """Whether the schema is already at the newest revision: one query, so that a
        command on a migrated database does not import alembic (about a third of the CLI's
        start-up) only to find there is nothing to do."""
        try:
            with self._guard(), self.engine.connect() as conn:
                rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
        except SQLAlchemyError:
            return False  # no alembic_version table yet: a new database
        return [row[0] for row in rows] == [head_revision()]

    def migrate(self, revision: str = "head") -> None:
        """Bring the schema to *revision* with alembic, inside one write transaction."""
        if revision == "head" and self.at_head():
            return
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        # configparser interpolation: a literal '%' (URL-encoded password) must be doubled.
        config.set_main_option("sqlalchemy.url", self.raw_url.replace("%", "%%"))
        with self._guard():
            try:
                with self.write_engine.begin() as conn:
                    self._serialize(conn)
                    # env.py runs the migrations on this connection (and transaction),
                    # which is also the only way to reach an in-memory database.
                    config.attributes["connection"] = conn
                    command.upgrade(config, revision)
            except SQLAlchemyError as exc:
                raise self._fail(exc) from exc

    def dispose(self) -> None:
        self.engine.dispose()
