"""PostgreSQL: the SMS channel keeps the planner's statistics of its queue tables current.

Without them (autovacuum off, or behind hundreds of rows a second) the planner read the whole
of outbox_ids for every batch of delivery receipts, and PostgreSQL's CPU grew with the table.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import pytest_twisted
from sqlalchemy import insert
from twisted.logger import globalLogPublisher

from core.store import Store
from core.store.tables import outbox, outbox_ids
from sms.server import QUEUE_TABLES, refresh_queue_statistics
from tests.conftest import PG_URL, drop_database, make_database_url
from tests.sms.channel_helpers import Channel

pytestmark = pytest.mark.skipif(not PG_URL, reason="PostgreSQL plans from statistics; "
                                                   "set LOYALTY_TEST_DATABASE_URL")

T = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)


@pytest.fixture
def pg_store(tmp_path):
    url = make_database_url("postgresql", tmp_path)
    store = Store(url)
    store.upgrade()
    yield store
    store.dispose()
    drop_database(url)


def fill_outbox_ids(store: Store, parts: int) -> None:
    """``parts`` submitted MT parts, each with the two keys a message id is recorded under."""
    with store.unit_of_work() as uow:
        uow.conn.execute(insert(outbox), [
            dict(id=i, msisdn="13800138000", language="zh", params="{}", kind="reply",
                 state="submitted", attempts=1, not_before=T, created_at=T)
            for i in range(1, parts + 1)])
        uow.conn.execute(insert(outbox_ids), [
            dict(outbox_id=i, part=1, message_id=f"{i:x}", id_key=key, created_at=T)
            for i in range(1, parts + 1) for key in (f"h:{i:x}", f"d:{i}")])
    store.dispose()  # a backend reports its changes to the statistics system as it exits


def receipt_lookup_plan(store: Store, keys: int) -> str:
    """PostgreSQL's plan for the lookup a batch of ``keys`` receipt keys runs."""
    marks = ", ".join(f"'d:{i}'" for i in range(1, keys + 1))
    with store.unit_of_work(write=False) as uow:
        return "\n".join(uow.conn.exec_driver_sql(
            f"EXPLAIN SELECT outbox_id, part, id_key FROM outbox_ids "
            f"WHERE id_key IN ({marks})").scalars())


def analysed(store: Store) -> set[str]:
    with store.unit_of_work(write=False) as uow:
        return {name for name, at in uow.conn.exec_driver_sql(
            "SELECT relname, last_analyze FROM pg_stat_user_tables "
            "WHERE schemaname = current_schema()") if at is not None}


def test_receipt_lookups_use_the_index_once_stale_statistics_are_refreshed(pg_store, rules):
    fill_outbox_ids(pg_store, 10_000)
    assert "Seq Scan on outbox_ids" in receipt_lookup_plan(pg_store, 20)  # the problem
    with pg_store.unit_of_work() as uow:
        refresh_queue_statistics(uow, rules)
    plan = receipt_lookup_plan(pg_store, 20)
    assert "Seq Scan" not in plan and "ix_outbox_ids_key" in plan
    # only what changed is analysed; analysed again only after the next 10 % of changes
    assert analysed(pg_store) == {"outbox", "outbox_ids"}
    with pg_store.unit_of_work() as uow:
        assert uow.stale_statistics(*QUEUE_TABLES) == []


@pytest_twisted.ensureDeferred
async def test_the_channel_refreshes_them_and_says_if_autovacuum_is_off(
        pg_store, rules, config, sim):
    warnings: list[str] = []

    def observe(event: dict) -> None:
        if "autovacuum" in event.get("log_format", ""):
            warnings.append(event["log_level"].name)

    fill_outbox_ids(pg_store, 1_000)
    with pg_store.unit_of_work(write=False) as uow:
        autovacuum_on = uow.autovacuum_on()
    globalLogPublisher.addObserver(observe)
    ch = Channel(sim, pg_store, rules, config)
    try:
        await ch.start()
        await sim.wait_for(lambda: {"outbox", "outbox_ids"} <= analysed(pg_store)
                           and (autovacuum_on or warnings), timeout=5)
    finally:
        globalLogPublisher.removeObserver(observe)
        await ch.stop()
    assert warnings == ([] if autovacuum_on else ["warn"])
