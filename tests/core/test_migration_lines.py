"""Migration 0009 on a database with members and orders in it: every existing line is active,
without subscriber id or address, and the members are found as before."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import insert

from core.store import Store
from core.store.tables import members, orders
from tests.conftest import BACKENDS, drop_database, make_database_url
from tests.core.helpers import add_reward


@pytest.fixture(params=BACKENDS)
def store_at_0007(request, tmp_path):
    url = make_database_url(request.param, tmp_path)
    store = Store(url)
    command.upgrade(store._alembic_config(), "0007_tickets")
    yield store
    store.dispose()
    drop_database(url)


def test_existing_members_are_active_lines_after_the_upgrade(store_at_0007, now):
    store = store_at_0007
    add_reward(store, "G01", kind="gift")
    with store.unit_of_work() as uow:
        uow.conn.execute(insert(members), dict(
            msisdn="13800138000", name="测试", language="zh", tier_code="standard",
            warning_opt_out=False, warning_channel="sms", pin_failures=0, created_at=now))
        uow.conn.execute(insert(orders), dict(
            order_no="1", msisdn="13800138000", reward_code="G01", reward_kind="gift",
            points=100, status="confirmed", channel="sms", request_id="x", created_at=now))
    store.upgrade()
    with store.unit_of_work(write=False) as uow:
        member = uow.members.get_member("13800138000")
        assert (member.line_status, member.subscriber_id, member.delivery_address) == \
            ("active", None, None)
        assert uow.orders.get_order("1").delivery_address is None
        assert uow.members.archived_keys("13800138000") == []
    command.downgrade(store._alembic_config(), "0007_tickets")
    store.upgrade()
