"""Engines, schema version checks and units of work."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import InterfaceError, OperationalError

from core.store.uow import SqlUnitOfWork

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class SchemaBehind(RuntimeError):
    """The database schema is older than this code."""


class DatabaseUnreachable(RuntimeError):
    """The database cannot be opened: server down, wrong URL or credentials, bad file path."""


def shown_url(url: str) -> str:
    """The database URL as messages may show it: the password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL too broken to parse is shown as given
        return url


def _unreachable(url: str, reason: object) -> DatabaseUnreachable:
    first_line = (str(reason).strip().splitlines() or ["no reason given"])[0]
    what_to_do = ("check [database] url (or LOYALTY_DATABASE_URL; a relative path is relative "
                  "to the working directory)" if url.startswith("sqlite") else
                  "check [database] url (or LOYALTY_DATABASE_URL) and that the database server "
                  "is running")
    return DatabaseUnreachable(f"cannot open the database {shown_url(url)}: {first_line}; "
                               f"{what_to_do}")


class Store:
    """One database: builds units of work; owns the engine."""

    def __init__(self, url: str, *, pool_size: int = 4, busy_timeout_ms: int = 5000) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            try:
                self.engine = _sqlite_engine(url, busy_timeout_ms)
            except OSError as exc:  # its directory cannot be made (a file there, no rights)
                raise _unreachable(url, f"cannot make its directory ({exc.filename}: "
                                        f"{(exc.strerror or str(exc)).lower()})") from None
            self.threads = 1
        else:
            self.engine = create_engine(
                url, pool_size=pool_size, max_overflow=2, pool_pre_ping=True
            )
            self.threads = pool_size

    @contextlib.contextmanager
    def unit_of_work(self, *, write: bool = True) -> Iterator[SqlUnitOfWork]:
        """One transaction, owned here: committed when the block ends normally, rolled back
        when it raises. A read-only unit (``write=False``) has nothing to keep: it always
        ends with a rollback. Use cases never commit; a driver that works in steps may call
        ``uow.commit()`` between steps."""
        with self.engine.connect() as conn:
            conn.info["write"] = write
            uow = SqlUnitOfWork(conn, is_sqlite=self.is_sqlite)
            try:
                yield uow
            except BaseException:
                if conn.in_transaction():
                    conn.rollback()
                raise
            if conn.in_transaction():
                if write:
                    conn.commit()
                else:
                    conn.rollback()

    # --- schema -------------------------------------------------------------------------

    def _alembic_config(self) -> AlembicConfig:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["engine"] = self.engine
        return cfg

    def current_revision(self) -> str | None:
        # Every command's first contact with the database: a refused connection, bad
        # credentials or an unopenable file surface here, as one message.
        try:
            with self.engine.connect() as conn:
                return MigrationContext.configure(conn).get_current_revision()
        except (OperationalError, InterfaceError) as exc:
            raise _unreachable(self.url, exc.orig or exc) from None

    def head_revision(self) -> str:
        return ScriptDirectory.from_config(self._alembic_config()).get_current_head()

    def upgrade(self) -> tuple[str | None, str]:
        before = self.current_revision()
        command.upgrade(self._alembic_config(), "head")
        return before, self.head_revision()

    def check_schema(self) -> None:
        current, head = self.current_revision(), self.head_revision()
        if current != head:
            raise SchemaBehind(
                f"database schema is at {current or 'nothing'}, this code needs {head}: "
                f"run `loyalty db upgrade` (database {shown_url(self.url)})"
            )

    def ping(self) -> bool:
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        return True

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_engine(url: str, busy_timeout_ms: int) -> Engine:
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # Take over transaction control from the sqlite3 module so BEGIN IMMEDIATE can be used.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # Writers take the write lock up front: two processes cannot both read a balance and
        # then both spend it, and no transaction dies half-way on a lock upgrade.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write", True) else "BEGIN")

    return engine
