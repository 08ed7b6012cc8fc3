"""Engines, schema version checks and units of work."""

from __future__ import annotations

import contextlib
import re
import time
import weakref
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError

from core.store.uow import SqlUnitOfWork

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# A pooled connection used this recently is not pinged at checkout: under load every unit of
# work would otherwise pay a round trip for a connection that just worked. One idle longer
# (a quiet night, a restarted server) is pinged and replaced when the ping fails.
PING_AFTER_IDLE_S = 5.0


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

    def __init__(self, url: str, *, pool_size: int = 4, busy_timeout_ms: int = 5000,
                 ping_after_idle_s: float = PING_AFTER_IDLE_S) -> None:
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
            self.engine = create_engine(url, pool_size=pool_size, max_overflow=2)
            _ping_when_idle(self.engine, ping_after_idle_s)
            self.threads = pool_size
        # psycopg 3 can read without a transaction (autocommit); other drivers keep BEGIN.
        self._lazy_reads = self.engine.dialect.driver == "psycopg"
        if self._lazy_reads:
            _begin_before_writes(self.engine)

    @contextlib.contextmanager
    def unit_of_work(self, *, write: bool = True) -> Iterator[SqlUnitOfWork]:
        """One transaction, owned here: committed when the block ends normally, rolled back
        when it raises. A read-only unit (``write=False``) has nothing to keep: it always
        ends with a rollback. Use cases never commit; a driver that works in steps may call
        ``uow.commit()`` between steps.

        On PostgreSQL (psycopg) a read-only unit runs without BEGIN/ROLLBACK round trips: its
        plain reads run in autocommit, each with its own snapshot, as under READ COMMITTED
        inside a transaction. Anything else it runs (a write, a row lock, a savepoint, a
        function call) first opens a transaction by hand (``_begin_before_writes``), which
        is rolled back at the end: what a read-only unit writes is still never kept."""
        with self.engine.connect() as conn:
            conn.info["write"] = write
            lazy = not write and self._lazy_reads
            if lazy:
                conn.execution_options(isolation_level="AUTOCOMMIT")
                # Only while this unit runs: conn.info lives as long as the pooled connection.
                conn.info["lazy_reads"] = True
            uow = SqlUnitOfWork(conn, is_sqlite=self.is_sqlite)
            try:
                yield uow
            except BaseException:
                if lazy:
                    _end_hand_transaction(conn)
                elif conn.in_transaction():
                    conn.rollback()
                raise
            finally:
                if lazy and not conn.invalidated:  # an invalidated one is thrown away
                    conn.info.pop("lazy_reads", None)
            if lazy:
                _end_hand_transaction(conn)
            elif conn.in_transaction():
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


def _ping_when_idle(engine: Engine, idle_s: float) -> None:
    """SQLAlchemy's custom pessimistic ping: only a connection idle longer than ``idle_s``
    is pinged at checkout; a failed ping raises ``DisconnectionError``, on which the pool
    drops that connection and checks out a fresh one (up to three tries). A connection that
    broke within ``idle_s`` of its last use fails its unit of work instead; the pool then
    replaces every connection older than the failure (SQLAlchemy invalidates the pool on a
    disconnect), so the server recovers by itself."""

    @event.listens_for(engine, "connect")
    def _fresh(_dbapi_conn: Any, record: Any) -> None:
        record.info["used_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("used_at", 0.0) <= idle_s:
            return
        try:
            # In autocommit: one round trip, no BEGIN/ROLLBACK around the SELECT 1.
            dbapi_conn.autocommit = True
            try:
                engine.dialect.do_ping(dbapi_conn)
            finally:
                dbapi_conn.autocommit = False
        except Exception as exc:  # noqa: BLE001 - any failure: use another connection
            raise DisconnectionError(f"ping after idle failed: {exc}") from exc
        record.info["used_at"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_conn: Any, record: Any) -> None:
        if record is not None:
            record.info["used_at"] = time.monotonic()


# What a read-only unit may run outside a transaction: a SELECT (or WITH ... SELECT) that
# locks nothing, writes nothing and calls none of our functions.
_READ_START = re.compile(r"\s*(SELECT|WITH)\b", re.IGNORECASE)
_NOT_A_PLAIN_READ = re.compile(
    r"\b(INSERT|UPDATE|DELETE|MERGE|FOR\s+(NO\s+KEY\s+)?UPDATE|FOR\s+(KEY\s+)?SHARE|"
    r"NEXTVAL|SETVAL|LOYALTY_\w+|PG_\w*LOCK\w*|PG_\w*ADVISORY\w*)\b", re.IGNORECASE)


@lru_cache(maxsize=2048)
def _plain_read(statement: str) -> bool:
    return bool(_READ_START.match(statement)) and not _NOT_A_PLAIN_READ.search(statement)


# How many of each engine's cursor-event listeners are our own (``_begin_before_writes``):
# with no others, ``QueriesBase._raw`` runs its statements on the DBAPI cursor itself and
# opens the hand transaction itself (``begin_by_hand``). SQLAlchemy wraps a listener, so
# they are counted, not compared.
_OWN_CURSOR_LISTENERS: weakref.WeakKeyDictionary[Engine, int] = weakref.WeakKeyDictionary()


def only_own_cursor_listeners(conn) -> bool:
    """Whether every cursor-event listener of this Connection is one of ours: none listens
    after the statement and the listeners before it are the ones registered here."""
    dispatch = conn.dispatch
    return not dispatch.after_cursor_execute and (
        len(dispatch.before_cursor_execute) == _OWN_CURSOR_LISTENERS.get(conn.engine, 0))


def begin_by_hand(conn, cursor, statement: str) -> None:
    """In a read-only unit running in autocommit (``lazy_reads``), a statement that is not a
    plain read first opens a transaction on its cursor (if none is open), so its effects
    stay undone and its locks held until the unit's end (``_end_hand_transaction``)."""
    if not conn.info.get("lazy_reads") or _plain_read(statement):
        return
    dbapi_conn = cursor.connection
    if dbapi_conn.autocommit and dbapi_conn.info.transaction_status == _IDLE:
        cursor.execute("BEGIN")


def _begin_before_writes(engine: Engine) -> None:
    """A read-only unit runs in autocommit; the first statement that is not a plain read
    opens a transaction by hand (on the same cursor, just before it): ``begin_by_hand``,
    run before every statement through the Connection (``_raw`` runs it itself)."""

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn, cursor, statement, _params, _context, _many) -> None:
        begin_by_hand(conn, cursor, statement)

    _OWN_CURSOR_LISTENERS[engine] = _OWN_CURSOR_LISTENERS.get(engine, 0) + 1


def _end_hand_transaction(conn) -> None:
    if conn.invalidated:  # the connection broke: nothing of it is kept anyway
        if conn.in_transaction():
            conn.rollback()
        return
    dbapi_conn = conn.connection.dbapi_connection
    if dbapi_conn is not None and dbapi_conn.info.transaction_status != _IDLE:
        dbapi_conn.rollback()


try:
    from psycopg.pq import TransactionStatus

    _IDLE = TransactionStatus.IDLE
except ImportError:  # pragma: no cover - psycopg is a dependency; lazy reads need it
    _IDLE = None


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
