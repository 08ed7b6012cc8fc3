"""Migration 0004 on a database with rows in it: existing call records get ids and stay
readable, and afterwards the keys are the member's (orders) and the call's own (calls)."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import insert, select

from core.store import Store
from core.store.tables import calls, members, orders
from tests.conftest import BACKENDS, drop_database, make_database_url
from tests.core.helpers import add_reward


@pytest.fixture(params=BACKENDS)
def store_at_0003(request, tmp_path):
    url = make_database_url(request.param, tmp_path)
    store = Store(url)
    command.upgrade(store._alembic_config(), "0003_jobs")
    yield store
    store.dispose()
    drop_database(url)


def order_row(no: str, msisdn: str, now) -> dict:
    return dict(order_no=no, msisdn=msisdn, reward_code="A01", reward_kind="service",
                points=100, status="confirmed", channel="ivr", request_id="1764300000.17:A01",
                created_at=now)


def test_upgrade_keeps_rows_and_rekeys_orders_and_calls(store_at_0003, now):
    store = store_at_0003
    with store.unit_of_work() as uow:
        uow.conn.execute(insert(calls), [
            dict(uniqueid=f"1764300000.{n}", msisdn_masked="138****8000", script="loyalty",
                 started_at=now, ended_at=now, menu_path="2", outcome="hangup")
            for n in (1, 2)])
    add_reward(store, "A01")
    with store.unit_of_work() as uow:
        # only the columns a 0003 database has (later migrations add more to members)
        uow.conn.execute(insert(members), [
            dict(msisdn=msisdn, name="测试", language="zh", tier_code="standard",
                 warning_opt_out=False, warning_channel="sms", pin_failures=0, created_at=now)
            for msisdn in ("13800138000", "15800158000")])
        uow.conn.execute(insert(orders), order_row("1", "13800138000", now))

    store.upgrade()

    with store.unit_of_work() as uow:
        # another member's order with the same channel and request id is now allowed
        uow.conn.execute(insert(orders), order_row("2", "15800158000", now))
        found = uow.orders.order_by_request("15800158000", "ivr", "1764300000.17:A01")
        assert found is not None and found.order_no == "2"
        # a second call with an existing uniqueid is a new record
        uow.calls.record_call_start(uniqueid="1764300000.1", msisdn_masked="158****8000",
                                    script="loyalty", now=now)
        uow.commit()
        rows = uow.conn.execute(select(calls).order_by(calls.c.id)).all()
    assert [(r.uniqueid, r.msisdn_masked) for r in rows] == [
        ("1764300000.1", "138****8000"), ("1764300000.2", "138****8000"),
        ("1764300000.1", "158****8000")]
    assert len({r.id for r in rows}) == 3


def test_downgrade_and_upgrade_again(store_at_0003, now):
    store = store_at_0003
    store.upgrade()
    command.downgrade(store._alembic_config(), "0003_jobs")
    with store.unit_of_work() as uow:  # the old key is back: uniqueid is the primary key
        uow.conn.exec_driver_sql(
            "INSERT INTO calls (uniqueid, msisdn_masked, script, started_at, menu_path) "
            "VALUES ('1764300000.9', '138****8000', 'loyalty', '2026-11-22 04:00:00', '')")
    store.upgrade()
    with store.unit_of_work() as uow:
        assert uow.conn.execute(select(calls.c.id, calls.c.uniqueid)).all() == [
            (1, "1764300000.9")]
