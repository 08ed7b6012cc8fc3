"""What every repository shares: the unit of work's connection and the few statement helpers
each area needs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from core.store.bulk import copy_insert

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

    def _insert_new(self, table: Any, rows: Sequence[dict[str, Any]],
                    constants: dict[str, Any], *, unique: list[str],
                    copy_columns: dict[str, str], copy_conflict: str) -> None:
        """Insert many rows (each with ``constants``), skipping those whose ``unique`` columns
        match a stored row: one multi-row ``INSERT ... ON CONFLICT DO NOTHING`` on SQLite, a
        COPY of ``copy_columns`` (name: SQL type) on PostgreSQL, where ``copy_conflict`` is
        the ``ON CONFLICT`` clause that skips them."""
        if not self.is_sqlite:
            copy_insert(self.conn, table.name, copy_columns, rows, constants, copy_conflict)
            return
        stmt = self._insert(table).on_conflict_do_nothing(index_elements=unique)
        self.conn.execute(stmt, [dict(r, **constants) for r in rows])

    def _existing(self, column: Any, values: Iterable[Any]) -> set[Any]:
        """Those of ``values`` found in ``column``, asked in batches."""
        found: set[Any] = set()
        batch = list(dict.fromkeys(values))
        for i in range(0, len(batch), IN_BATCH):
            found.update(self.conn.execute(
                select(column).where(column.in_(batch[i:i + IN_BATCH]))).scalars())
        return found
