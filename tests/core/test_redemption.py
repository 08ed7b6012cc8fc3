"""Redemption: prices by tier, stock, limits, idempotency, cancellation and confirmations."""

from datetime import UTC, date, datetime, timedelta

import pytest

from core.accounts import balance, check_ledger, credit_points, history, set_pin, verify_pin
from core.domain import (
    InsufficientPoints,
    LimitReached,
    OrderNotCancellable,
    OutOfStock,
    RewardUnavailable,
    UnknownReward,
)
from core.preferences import start_auto_signup
from core.redemption import (
    cancel_order,
    catalogue,
    confirm_redemption,
    quote_redemption,
    redeem,
    start_confirmation,
)
from core.service_desk import update_delivery
from tests.core.helpers import add_member, add_reward

M = "13800138000"


@pytest.fixture
def member(store, run, now):
    add_member(store, M)
    run(credit_points, M, 300, "bill", date(2024, 3, 1), now, reference="old")
    run(credit_points, M, 700, "bill", date(2026, 3, 1), now, reference="new")
    return M


def test_redeem_debits_soonest_expiring_points_and_records_the_lots(store, run, now, member):
    add_reward(store, "A01", points=400)
    order = run(redeem, M, "A01", "sms", "mo-1", now)
    assert (order.points, order.status, order.delivery) == (400, "confirmed", None)
    with store.unit_of_work() as uow:
        draws = uow.members.ledger_draws_for_order(order.order_no, "debit")
        lots = {lot.id: lot for lot in uow.members.get_lots([d[0] for d in draws])}
    assert [(lots[i].reference, n) for i, n in draws] == [("old", 300), ("new", 100)]
    assert run(balance, M, now).points == 600
    assert run(history, M, now)[0].amount == -400


def test_same_request_never_debits_twice(store, run, now, member):
    add_reward(store, "A01", points=400)
    first = run(redeem, M, "A01", "ivr", "call-1/confirm", now)
    again = run(redeem, M, "A01", "ivr", "call-1/confirm", now)
    assert first.order_no == again.order_no
    assert run(balance, M, now).points == 600


def test_the_balance_never_goes_negative(store, run, now, member):
    add_reward(store, "G01", kind="gift", points=1001)
    with pytest.raises(InsufficientPoints) as short:
        run(redeem, M, "G01", "sms", "x", now)
    assert (short.value.balance, short.value.price) == (1000, 1001)
    assert run(balance, M, now).points == 1000


def test_price_follows_the_tier(store, run, now):
    add_member(store, M)
    run(credit_points, M, 7000, "bill", date(2026, 6, 1), now, reference="gold")
    add_reward(store, "A01", points=1000, prices=[("gold", 900)])
    assert run(quote_redemption, M, "A01", now).price == 900
    assert [p.price for p in run(catalogue, M, now)] == [900]


def test_stock_limit_and_window(store, run, now, member):
    add_reward(store, "G01", kind="gift", points=10, stock=1)
    add_reward(store, "A02", points=10, limit=1)
    add_reward(store, "A03", points=10, available=(date(2027, 1, 1), None))
    run(redeem, M, "G01", "sms", "1", now)
    with pytest.raises(OutOfStock):
        run(redeem, M, "G01", "sms", "2", now)
    run(redeem, M, "A02", "sms", "3", now)
    with pytest.raises(LimitReached):
        run(redeem, M, "A02", "sms", "4", now)
    with pytest.raises(RewardUnavailable):
        run(redeem, M, "A03", "sms", "5", now)
    with pytest.raises(UnknownReward):
        run(redeem, M, "ZZ9", "sms", "6", now)
    assert [p.reward.code for p in run(catalogue, M, now)] == ["A02", "G01"]


def test_gift_orders_get_a_delivery_record(store, run, now, member):
    add_reward(store, "G01", kind="gift", points=100, stock=5)
    order = run(redeem, M, "G01", "ivr", "g", now)
    assert order.delivery.status == "pending"
    run(update_delivery, order.order_no, "shipped", "SF", "SF123", now + timedelta(hours=1))
    with store.unit_of_work() as uow:
        assert [d.status for d in uow.orders.delivery_history(order.order_no)] == \
            ["pending", "shipped"]
    with pytest.raises(OrderNotCancellable):
        run(cancel_order, order.order_no, now + timedelta(hours=2))


def test_cancel_refunds_the_same_lots_and_the_stock(store, run, now, member):
    add_reward(store, "G01", kind="gift", points=400, stock=3)
    order = run(redeem, M, "G01", "sms", "c", now)
    cancelled = run(cancel_order, order.order_no, now + timedelta(hours=1))
    assert cancelled.status == "cancelled" and cancelled.delivery.status == "cancelled"
    assert run(balance, M, now).points == 1000
    with store.unit_of_work() as uow:
        assert uow.orders.get_reward("G01").stock == 3
        remaining = {lot.reference: lot.remaining for lot in uow.members.spendable_lots(M, now)}
    assert remaining == {"old": 300, "new": 700}
    assert run(history, M, now)[0].kind == "refund"
    assert run(check_ledger) == []
    with pytest.raises(OrderNotCancellable):
        run(cancel_order, order.order_no, now + timedelta(hours=2))


def test_cancel_after_the_lots_expired_refunds_a_fresh_lot(store, run, now, member):
    add_reward(store, "A01", points=400)
    order = run(redeem, M, "A01", "sms", "c", now)
    later = datetime(2027, 2, 1, tzinfo=UTC)  # the 300 from 2024 expired on 31 Dec 2026
    run(cancel_order, order.order_no, later)
    # "new" gets its 100 back; the 300 drawn from the lapsed 2024 lot come back as a fresh lot.
    assert run(balance, M, later).points == 1000
    with store.unit_of_work() as uow:
        fresh = [lot for lot in uow.members.spendable_lots(M, later) if lot.source == "refund"]
    assert [(lot.amount, lot.earned_on) for lot in fresh] == [(300, date(2027, 2, 1))]
    assert run(check_ledger) == []


def test_sms_confirmation_code_redeems_once(store, run, now, member):
    add_reward(store, "A01", points=100)
    quote, code, expires = run(start_confirmation, M, "A01", "sms", now)
    assert len(code) == 6 and code.isdigit() and expires == now + timedelta(minutes=10)
    order = run(confirm_redemption, M, code, "sms", now + timedelta(minutes=1))
    again = run(confirm_redemption, M, code, "sms", now + timedelta(minutes=2))
    assert order.order_no == again.order_no
    assert run(balance, M, now).points == 900


def test_confirmation_code_expires_after_ten_minutes(store, run, now, member):
    add_reward(store, "A01", points=100)
    _, code, _ = run(start_confirmation, M, "A01", "sms", now)
    refused = run(confirm_redemption, M, code, "sms", now + timedelta(minutes=10, seconds=1))
    assert not refused.accepted and refused.tries_left == 2
    assert run(balance, M, now).points == 1000


def test_an_automatic_redemption_sign_up_code_never_spends_points(store, run, now, member):
    # The sign-up code and a redemption code live in one table; only the sign-up may take it.
    add_reward(store, "A01", points=100)
    _, code, _ = run(start_auto_signup, M, "A01", now)
    refused = run(confirm_redemption, M, code, "sms", now + timedelta(minutes=1))
    assert not refused.accepted
    assert run(balance, M, now).points == 1000
    with store.unit_of_work() as uow:
        assert uow.orders.count_orders(M, "A01") == 0


def test_guessing_codes_by_sms_locks_the_pin_for_the_ivr_too(store, run, now, member):
    add_reward(store, "A01", points=100)
    run(set_pin, M, "2468", now)
    run(start_confirmation, M, "A01", "sms", now)
    for tries_left in (2, 1):
        assert run(confirm_redemption, M, "000000", "sms", now).tries_left == tries_left
    assert run(confirm_redemption, M, "000001", "sms", now).locked_until == \
        now + timedelta(minutes=30)
    assert run(verify_pin, M, "2468", now).locked_until == now + timedelta(minutes=30)
