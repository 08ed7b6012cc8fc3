"""The database server drops our connections (a restart, an operator's pg_terminate_backend):
the store recovers by itself. A pooled connection idle longer than the ping threshold is
pinged at checkout and replaced unseen; one used more recently is not pinged (no round trip
under load), so at most the unit of work that meets the dead connection fails, and the next
one works (the pool replaces every connection older than the failure)."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from core.store import Store
from tests.conftest import PG_URL

pytestmark = pytest.mark.skipif(not PG_URL, reason="PostgreSQL only (LOYALTY_TEST_DATABASE_URL)")


def backend_pids(store: Store, n: int) -> list[int]:
    """Check out ``n`` connections at once (so the pool holds ``n``), return their pids."""
    conns = [store.engine.connect() for _ in range(n)]
    try:
        return [c.exec_driver_sql("SELECT pg_backend_pid()").scalar() for c in conns]
    finally:
        for c in conns:
            c.close()


def terminate(pids: list[int]) -> None:
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            for pid in pids:
                conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
    finally:
        admin.dispose()


def read_one(store: Store, *, write: bool) -> int:
    with store.unit_of_work(write=write) as uow:
        return uow.conn.exec_driver_sql("SELECT 1").scalar()


@pytest.fixture
def pg_url(database_url):
    if database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL only")
    return database_url


@pytest.mark.parametrize("write", [True, False])
def test_idle_connections_killed_by_the_server_are_replaced_unseen(pg_url, write):
    store = Store(pg_url, pool_size=2, ping_after_idle_s=0.0)  # every checkout pings
    try:
        terminate(backend_pids(store, 2))
        for _ in range(4):
            assert read_one(store, write=write) == 1
    finally:
        store.dispose()


@pytest.mark.parametrize("write", [True, False])
def test_recently_used_connections_are_not_pinged_and_the_pool_recovers(pg_url, write):
    store = Store(pg_url, pool_size=2, ping_after_idle_s=3600.0)
    try:
        terminate(backend_pids(store, 2))
        failures = 0
        for _ in range(4):
            try:
                assert read_one(store, write=write) == 1
            except DBAPIError as exc:
                assert exc.connection_invalidated  # a disconnect, seen as one
                failures += 1
        # The first unit meets a dead connection (nothing pinged it); the pool is then
        # invalidated as a whole, so the other dead connection is never handed out.
        assert failures == 1
    finally:
        store.dispose()
