"""Points expiry, monthly automatic redemption and tier review as jobs."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import update

from core.accounts import balance, check_ledger, credit_points
from core.service_desk import subscribe_auto_redemption
from core.store.orders_sql import SqlOrders
from core.store.tables import ledger, orders, rewards
from sms.render import render
from tests.core.helpers import add_reward
from tests.core.jobs.conftest import add_lot, add_members, count, drive, local, outbox_rows

A, B, C = "13800138000", "13900139000", "15800158000"


# --- expire-points ---------------------------------------------------------------------------


def test_expiry_twice_changes_nothing(store, rules, config, run):
    add_members(store, A, B)
    for i in range(4):
        add_lot(store, rules, A, 100 + i, earned_on=date(2024, 3, 1))
    add_lot(store, rules, B, 50, earned_on=date(2024, 3, 1))
    add_lot(store, rules, B, 70, earned_on=date(2025, 3, 1))  # good for another year
    midnight = local(2027, 1, 1, 0, 10)

    preview = drive(store, rules, config, "expire-points", midnight, dry_run=True)
    assert preview.counts == {"lots": 5, "points": 456, "members": 2}
    first = drive(store, rules, config, "expire-points", midnight, batch=2)
    assert first.state == "done" and first.steps == 3
    assert first.counts == {"lots": 5, "points": 456}
    ledger_rows = count(store, ledger)
    again = drive(store, rules, config, "expire-points", midnight + timedelta(hours=1),
                  force=True)
    assert again.counts == {"lots": 0, "points": 0}
    assert count(store, ledger) == ledger_rows
    assert run(balance, A, midnight).points == 0
    assert run(balance, B, midnight).points == 70
    assert run(check_ledger) == []


def test_nothing_expires_a_second_early(store, rules, config, run):
    add_members(store, A)
    add_lot(store, rules, A, 100, earned_on=date(2024, 3, 1))  # expires 2026-12-31 16:00Z
    last_second = local(2026, 12, 31, 23, 59) + timedelta(seconds=59)
    assert drive(store, rules, config, "expire-points", last_second).counts["lots"] == 0
    assert run(balance, A, last_second).points == 100


# --- auto-redeem -----------------------------------------------------------------------------


def _subscribers(store, rules, run):
    add_reward(store, "A02", points=800)
    add_members(store, A, B)
    add_members(store, C, language="en")
    for m, points in ((A, 2000), (B, 300), (C, 900)):
        run(credit_points, m, points, "bill", date(2026, 5, 1), local(2026, 5, 2),
            reference=f"ref-{m}")
        run(subscribe_auto_redemption, m, "A02", local(2026, 6, 1))


def test_auto_redeem_twice_in_a_month_debits_once_and_notifies_once(store, rules, config, run):
    _subscribers(store, rules, run)
    day1 = local(2026, 12, 1, 9, 0)
    preview = drive(store, rules, config, "auto-redeem", day1, dry_run=True, samples=5)
    assert preview.counts == {"subscriptions": 3, "redeemed": 2, "points": 1600, "short": 1}
    assert count(store, orders) == 0

    first = drive(store, rules, config, "auto-redeem", day1, samples=5)
    assert first.run_key == "2026-12"
    assert first.counts == {"subscriptions": 3, "redeemed": 2, "points": 1600, "short": 1}
    assert [(e["msisdn"], e["points"]) for e in first.events] == [
        ("138****8000", 800), ("158****8000", 800)]
    again = drive(store, rules, config, "auto-redeem", day1 + timedelta(hours=2), force=True)
    assert again.counts["already_redeemed"] == 2 and "redeemed" not in again.counts
    assert run(balance, A, day1).points == 1200
    assert run(balance, C, day1).points == 100
    assert run(balance, B, day1).points == 300
    assert count(store, orders) == 2
    with store.unit_of_work(write=False) as uow:
        order = uow.orders.order_by_request(A, "job", "auto:1:2026-12")
        assert order.points == 800 and order.channel == "job"

    notices = outbox_rows(store, kind="auto_redeem")
    assert [(n["msisdn"], n["template"]) for n in notices] == [
        (A, "auto_redeem_done"), (B, "auto_redeem_short"), (C, "auto_redeem_done")]
    en = render(notices[2]["template"], "en", notices[2]["params"])
    assert "800 points deducted" in en and "100 points left" in en
    zh = render(notices[1]["template"], "zh", notices[1]["params"])
    assert "不足" in zh and "需800分" in zh
    # 09:00 is outside the quiet hours: the notices go at once.
    assert all(n["not_before"] == day1 for n in notices)

    # Next month: a new deduction for A, another short notice for B (and C).
    drive(store, rules, config, "auto-redeem", local(2027, 1, 1, 9, 0))
    assert run(balance, A, day1).points == 400
    assert len(outbox_rows(store, kind="auto_redeem")) == 6
    assert run(check_ledger) == []


def test_unsubscribed_members_are_left_alone(store, rules, config, run):
    _subscribers(store, rules, run)
    run(subscribe_auto_redemption, A, "A02", local(2026, 7, 1), active=False)
    result = drive(store, rules, config, "auto-redeem", local(2026, 12, 1, 9, 0))
    assert result.counts["subscriptions"] == 2
    assert run(balance, A, local(2026, 12, 2)).points == 2000


def test_an_auto_redemption_refused_at_its_last_step_takes_no_points(store, rules, config, run,
                                                                    monkeypatch):
    add_reward(store, "A03", points=800, stock=5)
    add_members(store, A)
    run(credit_points, A, 2000, "bill", date(2026, 5, 1), local(2026, 5, 2), reference="ref-a")
    run(subscribe_auto_redemption, A, "A03", local(2026, 6, 1))
    redeem_atomically = SqlOrders.redeem_atomically

    def sold_out_meanwhile(repository, redemption):
        # Another channel took the last item after this redemption checked the stock (and
        # before its atomic part: one call on PostgreSQL, so the race can only come before).
        repository.conn.execute(update(rewards).where(
            rewards.c.code == redemption.order.reward_code).values(stock=0))
        return redeem_atomically(repository, redemption)

    monkeypatch.setattr(SqlOrders, "redeem_atomically", sold_out_meanwhile)
    # PostgreSQL checks and spends in one call (loyalty_redeem), which leaves no point to
    # step in between from Python: the race is staged on the use case's steps.
    monkeypatch.setattr(SqlOrders, "redeem_request", lambda repository, request: None)
    result = drive(store, rules, config, "auto-redeem", local(2026, 12, 1, 9, 0))
    assert result.counts.get("out_of_stock") == 1 and "redeemed" not in result.counts
    assert run(balance, A, local(2026, 12, 2)).points == 2000
    assert count(store, orders) == 0
    assert run(check_ledger) == []


# --- tier-review -----------------------------------------------------------------------------


def test_tier_review_sends_an_sms_to_members_whose_tier_changed(store, rules, config, run):
    add_members(store, A)                                                   # earns Silver
    add_members(store, B, tier="gold", tier_valid_until=date(2026, 11, 30))  # Gold lapsed
    add_members(store, C, language="en", tier_valid_until=date(2027, 6, 30))  # stays Standard
    run(credit_points, A, 2500, "bill", date(2026, 6, 1), local(2026, 6, 2))
    run(credit_points, B, 300, "bill", date(2026, 6, 1), local(2026, 6, 2))
    run(credit_points, C, 100, "bill", date(2026, 6, 1), local(2026, 6, 2))
    run(credit_points, C, 5000, "reward", date(2026, 6, 1), local(2026, 6, 2))  # not qualifying
    at = local(2026, 12, 1, 2, 0)

    result = drive(store, rules, config, "tier-review", at, samples=5)
    assert result.counts == {"members": 3, "reviewed": 2, "upgraded": 1, "downgraded": 1}
    notices = outbox_rows(store, kind="tier_changed")
    assert [(n["msisdn"], n["language"], n["params"]["tier_name"], n["params"]["up"])
            for n in notices] == [(A, "zh", "银卡会员", True), (B, "zh", "普通会员", False)]
    assert "升级为银卡会员" in render("tier_changed", "zh", notices[0]["params"])
    assert "有效期至2027年12月31日" in render("tier_changed", "zh", notices[0]["params"])
    # Reviewed at 02:00: held until the quiet hours end.
    assert all(n["not_before"] == local(2026, 12, 1, 8, 0) for n in notices)
    with store.unit_of_work(write=False) as uow:
        assert uow.members.get_member(A).tier_code == "silver"
        assert uow.members.get_member(B).tier_code == "standard"
        assert uow.members.get_member(B).tier_valid_until == date(2027, 12, 31)

    again = drive(store, rules, config, "tier-review", at + timedelta(days=1))
    assert again.counts == {"members": 3}
    assert len(outbox_rows(store, kind="tier_changed")) == 2
