"""The unit of work: one connection, one transaction, and the repositories of each area on it.

Every repository method returns plain values or frozen domain records, never rows or ORM
objects. Messaging (MO, outbox, receipts) is ``uow.messaging``; the set-aside queue operations
(MO, MT and job items alike) are mixed in from ``queues_sql``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy.engine import Connection

from core.store.calls_sql import SqlCalls, SqlTickets
from core.store.fulfilment_sql import SqlFulfilment
from core.store.jobs_sql import SqlJobs
from core.store.members_sql import SqlMembers
from core.store.messaging import SqlMessaging
from core.store.orders_sql import SqlOrders
from core.store.outbox_sql import SqlOutbox
from core.store.queues_sql import QueueQueries
from core.store.tables import metadata


class SqlUnitOfWork(QueueQueries):
    """Implements ``core.ports.UnitOfWork``: every repository shares this connection, so all
    they write is committed, or rolled back, together."""

    def __init__(self, conn: Connection, *, is_sqlite: bool) -> None:
        self.conn = conn
        self.is_sqlite = is_sqlite
        self.members = SqlMembers(conn, is_sqlite=is_sqlite)
        self.orders = SqlOrders(conn, is_sqlite=is_sqlite)
        self.jobs = SqlJobs(conn, is_sqlite=is_sqlite)
        self.calls = SqlCalls(conn, is_sqlite=is_sqlite)
        self.tickets = SqlTickets(conn, is_sqlite=is_sqlite)
        self.outbox = SqlOutbox(conn, is_sqlite=is_sqlite)
        self.messaging = SqlMessaging(conn, is_sqlite=is_sqlite)
        self.fulfilment = SqlFulfilment(conn, is_sqlite=is_sqlite)

    def commit(self) -> None:
        """For drivers that work in steps (one transaction per step); use cases never commit:
        the unit of work commits when they return."""
        self.conn.commit()

    def rollback(self) -> None:
        self.conn.rollback()

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        """A SAVEPOINT around the block: its writes stay in the transaction when it ends
        normally and are undone, alone, when it raises (the exception goes on)."""
        nested = self.conn.begin_nested()
        try:
            yield
        except BaseException:
            if nested.is_active:
                nested.rollback()
            raise
        nested.commit()

    # --- planner statistics (PostgreSQL) ----------------------------------------------------

    def refresh_statistics(self, *tables: str) -> None:
        """Let PostgreSQL's planner see tables a bulk load just grew (it would otherwise scan
        a 'tiny' table on every lookup). SQLite plans these lookups by index anyway."""
        if not self.is_sqlite:
            for table in tables:
                self.conn.exec_driver_sql(f"ANALYZE {metadata.tables[table].name}")

    def stale_statistics(self, *tables: str) -> list[str]:
        """Those of ``tables`` changed by more than autovacuum's analyze threshold (50 rows +
        10 %) since their last ANALYZE (PostgreSQL; none on SQLite)."""
        if self.is_sqlite:
            return []
        names = {metadata.tables[t].name: t for t in tables}
        return sorted(names[r] for r, in self.conn.exec_driver_sql(
            "SELECT relname FROM pg_stat_user_tables WHERE schemaname = current_schema() "
            "AND relname = ANY(%(names)s) AND n_mod_since_analyze > 50 + 0.1 * n_live_tup",
            {"names": list(names)}))

    def autovacuum_on(self) -> bool:
        """Whether PostgreSQL's autovacuum runs (always True on SQLite, which has none)."""
        if self.is_sqlite:
            return True
        return self.conn.exec_driver_sql("SELECT current_setting('autovacuum')").scalar() == "on"
