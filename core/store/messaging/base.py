"""What the messaging repository's query classes share: the connection, driver SQL, instants.

The statements run for every SMS are written in the drivers' own SQL (``_raw``): building a
SQLAlchemy statement, finding it in the compiled cache and passing every value of every row
through its type processors cost more CPU than SQLite's own work, and was a third of the SMS
channel's CPU per round trip. The SQL is the common subset of SQLite and PostgreSQL; values
go in and come out as the table types would have made them (``_db_time`` / ``_py_time``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

CHUNK = 500


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def marks(n: int) -> str:
    return ", ".join("?" * n)


def py_time(value: Any) -> datetime:
    """A stored instant (naive UTC; SQLite gives the text SQLAlchemy wrote) as aware UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC)


_PG_SQL: dict[str, str] = {}


class QueriesBase:
    """Runs on the unit of work's connection, inside its transaction."""

    def __init__(self, conn: Connection, *, is_sqlite: bool) -> None:
        self.conn = conn
        self.is_sqlite = is_sqlite

    def _insert(self, table):
        return sqlite_insert(table) if self.is_sqlite else pg_insert(table)

    def _raw(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run driver SQL written with ``?`` marks; ``params`` a tuple, or a list of tuples
        for executemany. Still through the Connection: its transaction (BEGIN IMMEDIATE on
        SQLite) and its exception wrapping (SQLAlchemy's DBAPIError) apply."""
        if not self.is_sqlite:
            pg = _PG_SQL.get(sql)
            if pg is None:
                pg = _PG_SQL[sql] = sql.replace("?", "%s")
            sql = pg
        return self.conn.exec_driver_sql(sql, params)

    def _db_time(self, instant: datetime) -> Any:
        """An aware instant as the UTCDateTime column stores it: naive UTC (as SQLAlchemy's
        SQLite text, ``2026-11-22 16:49:19.000000``, which sorts and compares as time)."""
        if instant.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass aware UTC instants")
        naive = instant.astimezone(UTC).replace(tzinfo=None)
        return naive.isoformat(" ", "microseconds") if self.is_sqlite else naive

    def connection_lost(self, exc: BaseException) -> bool:
        """The database went away: nothing to do with the message, retry the batch later."""
        return isinstance(exc, sa_exc.InterfaceError) or (
            isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated)
