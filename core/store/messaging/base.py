"""What the messaging repository's query classes share: the connection, driver SQL, instants.

The statements run for every SMS are written in the drivers' own SQL (``_raw``): building a
SQLAlchemy statement, finding it in the compiled cache and passing every value of every row
through its type processors cost more CPU than SQLite's own work, and was a third of the SMS
channel's CPU per round trip. The SQL is the common subset of SQLite and PostgreSQL; values
go in and come out as the table types would have made them (``_db_time`` / ``_py_time``).

On PostgreSQL a write of many rows is one statement over arrays, one per column
(``unnest(?::type[], ...)``, parameters from ``_arrays``), not an executemany: the driver
sends an executemany as one statement per row, about 13 us of client CPU a row against 2.5
for the array form. The arrays go as PostgreSQL's array text (``array_literal``), not as
lists the driver adapts. SQLite runs executemany in C, and has no arrays. (Sets of values
stay ``IN`` lists: ``= ANY(array)`` measured slower for the handler's reads.)

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


_NONE = type(None)


def array_literal(column: Sequence[Any]) -> str:
    """A column of values as PostgreSQL's array input text (``{1,"a b",NULL}``), for a
    parameter cast to an array type (``?::text[]``). The driver's own list adapter looks at
    every element's type and escapes it in Python: a statement over four arrays of 95 values
    cost 670 us of client CPU with lists, 200 us with this text. Elements:
    None, int, bool, str, naive datetime (as ``_db_time`` gives them on PostgreSQL)."""
    kinds = set(map(type, column))
    if kinds <= {int}:
        return "{" + ",".join(map(str, column)) + "}"
    if kinds <= {str, _NONE}:  # quoted as they are, unless one needs a backslash
        whole = "".join(value for value in column if value is not None)
        if '"' not in whole and "\\" not in whole:
            if _NONE not in kinds:
                return '{"' + '","'.join(column) + '"}'
            return "{" + ",".join("NULL" if value is None else '"' + value + '"'
                                  for value in column) + "}"
        return "{" + ",".join("NULL" if value is None else _quoted(value)
                              for value in column) + "}"
    if kinds <= {datetime, _NONE}:  # a batch's rows share a few instants: each once
        texts = {value: _array_element(value) for value in set(column)}
        return "{" + ",".join(map(texts.__getitem__, column)) + "}"
    return "{" + ",".join(map(_array_element, column)) + "}"


def _array_element(value: Any) -> str:
    """One element of ``array_literal``: quoted (a backslash before ``"`` and ``\\``), or
    a bare number, boolean or NULL."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, datetime):
        if value.tzinfo is not None:  # a timestamp column would drop the offset silently
            raise ValueError("an aware datetime in an array; pass what _db_time gives")
        value = value.isoformat(" ")
    elif not isinstance(value, str):
        raise TypeError(f"no array text for {type(value).__name__}")
    return _quoted(value)


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


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
    """Runs on the unit of work's connection, inside its transaction. One is made per unit
    of work: how ``_raw`` runs its statements (on the Connection, while anyone else listens
    to its cursor events; else on a DBAPI cursor) is decided at its first statement, and
    that cursor serves every statement of the unit on the same DBAPI connection."""

    def __init__(self, conn: Connection, *, is_sqlite: bool) -> None:
        self.conn = conn
        self.is_sqlite = is_sqlite
        self._path: str | None = None  # "connection", "cursor" or "by hand"
        self._cursor: Any = None
        self._cursor_of: Any = None  # the DBAPI connection it belongs to

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
        path = self._path
        if path is None:  # (asking SQLAlchemy's event lists cost ~10 us a statement)
            path = self._path = self._statement_path()
        if path == "connection":
            result = conn.exec_driver_sql(sql, params)
            rows = Rows(result.fetchall() if result.returns_rows else ())
            rows.rowcount = result.rowcount
            return rows
        if not conn.in_transaction():
            conn.begin()  # what exec_driver_sql's autobegin does (and its begin event)
        # The DBAPI connection changes only if the Connection lost and replaced it.
        dbapi_conn = conn.connection.dbapi_connection
        cursor = self._cursor
        if cursor is None or self._cursor_of is not dbapi_conn:
            cursor = self._cursor = dbapi_conn.cursor()
            self._cursor_of = dbapi_conn
        try:
            if path == "by hand":
                _engine.begin_by_hand(conn, cursor, sql)
            if isinstance(params, list):
                cursor.executemany(sql, params)
            else:
                cursor.execute(sql, params)
            # psycopg builds a Column object per column for ``description``; ``rownumber``
            # says the same (a result with rows) without them.
            has_rows = (cursor.description is not None if self.is_sqlite
                        else cursor.rownumber is not None)
            rows = Rows(cursor.fetchall() if has_rows else ())
            rows.rowcount = cursor.rowcount
        except conn.dialect.loaded_dbapi.Error as exc:
            # The Connection's own handler: wraps it (DBAPIError), invalidates a lost
            # connection, runs handle_error events, closes the cursor, raises. Other
            # exceptions go on as they did through exec_driver_sql (it wraps only the
            # driver's).
            self._cursor = None
            conn._handle_dbapi_exception(exc, sql, params, cursor, None)
        return rows

    def _statement_path(self) -> str:
        """``_raw``'s way for this unit: through the Connection while anyone else listens to
        its cursor events (tests count statements), so they see every statement; else on
        the cursor, opening PostgreSQL's hand transaction itself if the store's own listener
        is registered (``engine.begin_by_hand``)."""
        dispatch = self.conn.dispatch
        if not (dispatch.before_cursor_execute or dispatch.after_cursor_execute):
            return "cursor"
        return "by hand" if _engine.only_own_cursor_listeners(self.conn) else "connection"

    @staticmethod
    def _arrays(rows: Sequence[tuple[Any, ...]]) -> tuple[str, ...]:
        """Rows as one array per column: the parameters of PostgreSQL's ``unnest(?::type[],
        ...)`` (``array_literal``)."""
        return tuple(array_literal(column) for column in zip(*rows, strict=True))

    def _db_time(self, instant: datetime) -> Any:
        """An aware instant as the UTCDateTime column stores it: naive UTC (as SQLAlchemy's
        SQLite text, ``2026-11-22 16:49:19.000000``, which sorts and compares as time)."""
        return _stored_time(instant, self.is_sqlite)

    def connection_lost(self, exc: BaseException) -> bool:
        """The database went away: nothing to do with the message, retry the batch later."""
        return isinstance(exc, sa_exc.InterfaceError) or (
            isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated)
