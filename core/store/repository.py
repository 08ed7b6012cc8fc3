"""What every repository shares: the unit of work's connection and the few statement helpers
each area needs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

IN_BATCH = 500  # values per ``IN (...)``: well under every driver's parameter limit


class SqlRepository:
    """One area's queries, on the unit of work's connection (and so in its transaction)."""

    def __init__(self, conn: Connection, *, is_sqlite: bool) -> None:
        self.conn = conn
        self.is_sqlite = is_sqlite

    def _lock(self, stmt: Any) -> Any:
        # SQLite serialises writers with BEGIN IMMEDIATE; PostgreSQL locks the rows.
        return stmt if self.is_sqlite else stmt.with_for_update()

    def _first(self, stmt: Any, *, for_update: bool = False) -> Any:
        """The statement's first row (locked for the transaction when ``for_update``)."""
        return self.conn.execute(self._lock(stmt) if for_update else stmt).first()

    def _insert(self, table: Any) -> Any:
        """The dialect's INSERT, which knows ``ON CONFLICT DO NOTHING``."""
        return sqlite_insert(table) if self.is_sqlite else pg_insert(table)

    def _existing(self, column: Any, values: Iterable[Any]) -> set[Any]:
        """Those of ``values`` found in ``column``, asked in batches."""
        found: set[Any] = set()
        batch = list(dict.fromkeys(values))
        for i in range(0, len(batch), IN_BATCH):
            found.update(self.conn.execute(
                select(column).where(column.in_(batch[i:i + IN_BATCH]))).scalars())
        return found
