"""What the messaging repository's query classes share: the connection, driver SQL, instants.

The statements run for every SMS are written in the drivers' own SQL (``_raw``): building a
SQLAlchemy statement, finding it in the compiled cache and passing every value of every row
through its type processors cost more CPU than SQLite's own work, and was a third of the SMS
channel's CPU per round trip. The SQL is the common subset of SQLite and PostgreSQL; values
go in and come out as the table types would have made them (``_db_time`` / ``_py_time``).

On PostgreSQL a write of many rows is one statement over arrays, one per column
(``unnest(?::type[], ...)``, parameters from ``_arrays``), not an executemany: the driver
sends an executemany as one statement per row, about 13 us of client CPU a row against 2.5
for the array form. SQLite runs executemany in C, and has no arrays. (Sets of values stay
``IN`` lists: ``= ANY(array)`` measured slower for the handler's reads.)

``_raw`` runs them on a DBAPI cursor of the unit of work's connection, not through
``Connection.exec_driver_sql``: setting up a CursorResult and fetching each row through it
cost ~15 us a statement and ~1.5 us a row, as much as the rest of a small batch's work. What
the Connection did still happens: its transaction is begun first (BEGIN IMMEDIATE on SQLite,
the ``begin`` event), a driver error is wrapped (and a lost connection invalidated) by the
Connection's own handler, so ``connection_lost`` and every caller see the same exceptions;
and while anyone listens to the cursor events (tests count statements) the Connection's path
is taken, so they see every statement. The store's own listener (PostgreSQL's hand BEGIN
before a read-only unit's first write, ``engine.begin_by_hand``) does not count: with only
that one registered, ``_raw`` stays on the cursor and opens that transaction itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

# The engine module is always loaded first (core.store imports it; it imports this one
# through the unit of work): its functions are looked up when a statement runs.
from core.store import engine as _engine

CHUNK = 500


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def marks(n: int) -> str:
    return ", ".join("?" * n)


def py_time(value: Any) -> datetime:
    """A stored instant (naive UTC; SQLite gives the text SQLAlchemy wrote) as aware UTC."""
    if isinstance(value, str):
        try:
            # Parsed aware at once: replace(tzinfo=...) afterwards cost ten times the parse.
            aware = datetime.fromisoformat(value + "+00:00")
        except ValueError:  # not the naive text SQLAlchemy writes: as before
            aware = None
        if aware is not None and aware.tzinfo is UTC:
            return aware
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC)


def _stored_time(instant: datetime, is_sqlite: bool) -> Any:
    """What ``QueriesBase._db_time`` gives. UTC instants (the server's ``now``, a claim's
    end: a batch stores the same few on many rows) are remembered; a local time is not: two
    that differ only by ``fold`` (an hour repeated or skipped at a DST change) compare and
    hash equal, yet are different instants."""
    if instant.tzinfo is UTC:
        return _stored_utc(instant, is_sqlite)
    if instant.tzinfo is None:
        raise ValueError("naive datetime given to the store; pass aware UTC instants")
    return _stored_utc(instant.astimezone(UTC), is_sqlite)


@lru_cache(maxsize=1024)
def _stored_utc(instant: datetime, is_sqlite: bool) -> Any:
    naive = instant.replace(tzinfo=None)
    return naive.isoformat(" ", "microseconds") if is_sqlite else naive


_PG_SQL: dict[str, str] = {}


class Rows(list):
    """What ``_raw`` returns: the statement's rows (tuples; none for a write) and its
    ``rowcount``."""

    rowcount: int = -1


class QueriesBase:
    """Runs on the unit of work's connection, inside its transaction."""

    def __init__(self, conn: Connection, *, is_sqlite: bool) -> None:
        self.conn = conn
        self.is_sqlite = is_sqlite

    def _insert(self, table):
        return sqlite_insert(table) if self.is_sqlite else pg_insert(table)

    def _raw(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run driver SQL written with ``?`` marks; ``params`` a tuple, or a list of tuples
        for executemany. Returns ``Rows`` (iterable rows, ``rowcount``). The Connection's
        transaction (BEGIN IMMEDIATE on SQLite) and exception wrapping (SQLAlchemy's
        DBAPIError) apply, as they did through ``exec_driver_sql`` (see the module)."""
        if not self.is_sqlite:
            pg = _PG_SQL.get(sql)
            if pg is None:
                pg = _PG_SQL[sql] = sql.replace("?", "%s")
            sql = pg
        conn = self.conn
        dispatch = conn.dispatch
        by_hand = False
        if dispatch.before_cursor_execute or dispatch.after_cursor_execute:
            if not _engine.only_own_cursor_listeners(conn):
                result = conn.exec_driver_sql(sql, params)
                rows = Rows(result.fetchall() if result.returns_rows else ())
                rows.rowcount = result.rowcount
                return rows
            by_hand = True  # PostgreSQL's own listener: what it would do is done here
        if not conn.in_transaction():
            conn.begin()  # what exec_driver_sql's autobegin does (and its begin event)
        cursor = conn.connection.cursor()
        try:
            if by_hand:
                _engine.begin_by_hand(conn, cursor, sql)
            if isinstance(params, list):
                cursor.executemany(sql, params)
            else:
                cursor.execute(sql, params)
            rows = Rows(cursor.fetchall() if cursor.description is not None else ())
            rows.rowcount = cursor.rowcount
        except conn.dialect.loaded_dbapi.Error as exc:
            # The Connection's own handler: wraps it (DBAPIError), invalidates a lost
            # connection, runs handle_error events, raises. Other exceptions go on as they
            # did through exec_driver_sql (it wraps only the driver's).
            conn._handle_dbapi_exception(exc, sql, params, cursor, None)
        cursor.close()
        return rows

    @staticmethod
    def _arrays(rows: Sequence[tuple[Any, ...]]) -> tuple[list[Any], ...]:
        """Rows as one list per column: the parameters of PostgreSQL's ``unnest(?, ...)``."""
        return tuple(list(column) for column in zip(*rows, strict=True))

    def _db_time(self, instant: datetime) -> Any:
        """An aware instant as the UTCDateTime column stores it: naive UTC (as SQLAlchemy's
        SQLite text, ``2026-11-22 16:49:19.000000``, which sorts and compares as time)."""
        return _stored_time(instant, self.is_sqlite)

    def connection_lost(self, exc: BaseException) -> bool:
        """The database went away: nothing to do with the message, retry the batch later."""
        return isinstance(exc, sa_exc.InterfaceError) or (
            isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated)
