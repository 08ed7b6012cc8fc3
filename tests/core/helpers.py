"""Small builders for core tests."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from core.domain import Reward
from core.store.tables import lots

TEST_ADDRESS = "上海市黄浦区南京东路100号5楼"


def add_member(store, msisdn="13800138000", *, name="测试", language="zh", tier="standard",
               now=None, address: str | None = TEST_ADDRESS, line_status="active",
               subscriber_id: str | None = None):
    from datetime import UTC, datetime

    with store.unit_of_work() as uow:
        uow.members.upsert_members([dict(
            msisdn=msisdn, name=name, language=language, tier_code=tier, warning_opt_out=False,
            warning_channel="sms", pin_failures=0, delivery_address=address,
            line_status=line_status, subscriber_id=subscriber_id,
            created_at=now or datetime(2026, 1, 1, tzinfo=UTC))])


def add_reward(store, code="A01", *, kind="service", points=100, stock=None, limit=None,
               prices=(), available=(None, None)):
    with store.unit_of_work() as uow:
        uow.orders.upsert_reward(Reward(code, f"奖品{code}", f"Reward {code}", kind, points, stock,
                                        available[0], available[1], limit, 1, tuple(prices)))


def corrupt_lots(store, msisdn: str, now: datetime) -> None:
    """Two lots whose remaining points overflow a 64-bit SUM, as a broken feed wrote them."""
    with store.unit_of_work() as uow:
        uow.conn.execute(lots.insert(), [
            dict(msisdn=msisdn, amount=2**62, remaining=2**62, source="bill",
                 earned_on=(now - timedelta(days=3)).date(),
                 expires_at=now + timedelta(days=300), reference=f"broken-{i}", expired=False,
                 created_at=now - timedelta(days=3)) for i in range(2)])


def corrupt(store, msisdn, now):
    """Two lots as a broken upstream system wrote them: far beyond any balance."""
    huge = 2**62 if store.engine.dialect.name == "sqlite" else 2**31 - 1
    with store.unit_of_work() as uow:
        for n in range(2):
            uow.members.add_lot(msisdn=msisdn, amount=huge, source="bill",
                                earned_on=date(2026, 1, 1),
                                expires_at=datetime(2029, 1, 1, tzinfo=UTC), reference=f"X{n}",
                                now=now)
            uow.members.add_ledger(msisdn=msisdn, kind="credit", amount=huge, reason="bill",
                                   channel="import", now=now, reference=f"X{n}")
