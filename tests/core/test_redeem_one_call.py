"""The whole redemption in one call (PostgreSQL's ``loyalty_redeem``, migration 0011) against
the use case's own steps (``core.redemption.redeem`` with the store's one-call path turned
off): twin members in the same state, twin rewards, the same requests; what each is told,
the order, the points, the history and the stock must match.

What moved into the function is what is generated here: the member's line (barred, closed),
address and tier data (reviewed tier and its validity, an ops grant, an unknown tier code),
qualifying points (sources, the window's first day), the reward (kind, availability, stock,
limit, tier prices), the code as typed (lower case, unknown), replays.
"""

from __future__ import annotations

import itertools
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event

from core.domain import DomainError, Reward
from core.redemption import redeem
from core.rules import qualifying_window_start
from tests.core.helpers import add_member
from tests.core.test_redeem_paths import assert_ledger_clean

_numbers = itertools.count(1)
TIERS = ["standard", "silver", "gold", "diamond", "nosuch"]


@pytest.fixture
def pg_store(store):
    if store.is_sqlite:
        pytest.skip("the one-call path is PostgreSQL's (SQLite takes the use case's steps)")
    return store


def twin_members(store, now, rules, member, lots):
    pair = []
    today = rules.today(now)
    since = qualifying_window_start(today)
    for _ in range(2):
        msisdn = f"137{next(_numbers):08d}"
        add_member(store, msisdn, address=member["address"], line_status=member["line"],
                   tier=member["tier"])
        with store.unit_of_work() as uow:
            uow.members.update_member(
                msisdn, tier_valid_until=_day(today, member["valid"]),
                granted_tier_code=member["granted"],
                granted_tier_until=_day(today, member["granted_until"]))
            for n, (amount, source, earned) in enumerate(lots):
                earned_on = since + timedelta(days=earned)
                uow.members.add_lot(msisdn=msisdn, amount=amount, source=source,
                                    earned_on=earned_on, expires_at=now + timedelta(days=30),
                                    reference=f"{msisdn}-{n}", now=now)
                uow.members.add_ledger(msisdn=msisdn, kind="credit", amount=amount,
                                       reason=source, channel="import", now=now,
                                       reference=f"{msisdn}-{n}")
        pair.append(msisdn)
    return pair


def _day(today: date, offset: int | None) -> date | None:
    return None if offset is None else today + timedelta(days=offset)


def twin_rewards(store, now, rules, reward):
    today = rules.today(now)
    codes = []
    for _ in range(2):
        code = f"Q{next(_numbers):07d}"
        with store.unit_of_work() as uow:
            uow.orders.upsert_reward(Reward(
                code, "奖品", "Reward", reward["kind"], reward["points"], reward["stock"],
                _day(today, reward["from"]), _day(today, reward["until"]), reward["limit"], 1,
                tuple(reward["prices"])))
        codes.append(code)
    return codes


def attempt(store, rules, now, msisdn, code, request_id, *, one_call):
    """What the member is told, with the twins' own number and code taken out."""
    try:
        with store.unit_of_work() as uow:
            if not one_call:
                uow.orders.redeem_request = lambda request: None  # the use case's steps
            order = redeem(uow, rules, msisdn, code, "sms", request_id, now)
    except DomainError as exc:
        told = str(exc).replace(msisdn, "<m>").replace(code, "<c>").replace(code.upper(), "<C>")
        return type(exc).__name__, told
    return ("order", order.order_no[:6], order.reward_kind, order.points, order.status,
            order.channel, order.request_id, order.created_at, order.delivery_address,
            order.delivery.status if order.delivery else None)


def state(store, msisdn, code, now):
    with store.unit_of_work(write=False) as uow:
        summary = uow.members.balance_summary(msisdn, now)
        history = [(e.kind, e.amount, e.reason.replace(code, "<c>"), e.channel)
                   for e in uow.members.history(msisdn, 0, 100)]
        orders = [(o.points, o.reward_kind, o.delivery_address, o.status,
                   o.delivery.status if o.delivery else None)
                  for o in uow.orders.member_orders(msisdn, 100)]
        fulfil = sorted(r[0] is not None for r in uow.conn.exec_driver_sql(
            "SELECT fulfil_due_at FROM orders WHERE msisdn = %(m)s", {"m": msisdn}))
        stock = uow.orders.get_reward(code).stock
    return summary, history, orders, fulfil, stock


def assert_same(store, rules, now, member, lots, reward, requests):
    one, steps = twin_members(store, now, rules, member, lots)
    codes = twin_rewards(store, now, rules, reward)
    for typed, request_id in requests:
        told = []
        for msisdn, code, one_call in ((one, codes[0], True), (steps, codes[1], False)):
            asked = {"same": code, "lower": code.lower(), "unknown": code + "X"}[typed]
            told.append(attempt(store, rules, now, msisdn, asked, request_id,
                                one_call=one_call))
        assert told[0] == told[1], (typed, request_id)
    assert state(store, one, codes[0], now) == state(store, steps, codes[1], now)


MEMBER = dict(address="上海市", line="active", tier="standard", valid=None, granted=None,
              granted_until=None)
REWARD = dict(kind="service", points=100, stock=None, limit=None, prices=(), **{
    "from": None, "until": None})


@pytest.mark.parametrize(("member", "lots", "reward"), [
    ({}, [(500, "bill", 10)], {}),
    ({}, [(2500, "bill", 10)], dict(prices=[("silver", 40)])),  # earned silver
    ({}, [(2500, "bonus", 10)], dict(prices=[("silver", 40)])),  # not a qualifying source
    ({}, [(2500, "bill", -1)], dict(prices=[("silver", 40)])),  # earned before the window
    ({}, [(2500, "bill", 0)], dict(prices=[("silver", 40)])),  # the window's first day
    (dict(tier="gold", valid=0), [(500, "bill", 1)], dict(prices=[("gold", 7)])),  # kept
    (dict(tier="gold", valid=-1), [(500, "bill", 1)], dict(prices=[("gold", 7)])),  # lapsed
    (dict(granted="diamond", granted_until=0), [(500, "bill", 1)],
     dict(prices=[("diamond", 1), ("standard", 300)])),  # a grant, and a price too dear
    (dict(tier="nosuch", valid=10), [(500, "bill", 1)], dict(prices=[("standard", 5)])),
    (dict(line="suspended"), [(500, "bill", 1)], {}),
    (dict(line="closed"), [(500, "bill", 1)], {}),
    (dict(address="\u3000 "), [(500, "bill", 1)], dict(kind="gift", stock=3)),
    (dict(address=None), [(500, "bill", 1)], dict(kind="voucher")),
    ({}, [(500, "bill", 1)], dict(kind="gift", stock=1, limit=1)),
    ({}, [(500, "bill", 1)], {"from": 1}),
    ({}, [(500, "bill", 1)], {"until": 0, "stock": 0}),
])
def test_one_call_and_the_steps_tell_and_spend_the_same(pg_store, rules, now, member, lots,
                                                        reward):
    requests = [("same", "a"), ("lower", "b"), ("same", "a"), ("unknown", "c"),
                ("unknown", "a"), ("same", "d")]
    assert_same(pg_store, rules, now, MEMBER | member, lots, REWARD | reward, requests)
    assert_ledger_clean(pg_store, now)


def test_one_call_and_the_steps_agree_on_generated_cases(pg_store, rules, now):
    @settings(max_examples=30, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(member=st.fixed_dictionaries(dict(
               address=st.sampled_from([None, "", " \t", "\u3000", "北京市"]),
               line=st.sampled_from(["active", "active", "arrears", "closed"]),
               tier=st.sampled_from(TIERS), valid=st.sampled_from([None, -1, 0, 30]),
               granted=st.sampled_from([None, *TIERS]),
               granted_until=st.sampled_from([None, -1, 0, 30]))),
           lots=st.lists(st.tuples(st.integers(1, 9000),
                                   st.sampled_from(["bill", "partner", "bonus", "refund"]),
                                   st.sampled_from([-5, -1, 0, 1, 200])), max_size=4),
           reward=st.fixed_dictionaries({
               "kind": st.sampled_from(["service", "gift", "voucher"]),
               "points": st.integers(0, 3000), "stock": st.sampled_from([None, 0, 1, 2]),
               "limit": st.sampled_from([None, 1, 2]),
               "prices": st.lists(st.tuples(st.sampled_from(TIERS[:4]),
                                            st.integers(0, 3000)),
                                  unique_by=lambda p: p[0], max_size=3),
               "from": st.sampled_from([None, -1, 0, 1]),
               "until": st.sampled_from([None, -1, 0, 1])}),
           requests=st.lists(st.tuples(st.sampled_from(["same", "lower", "unknown"]),
                                       st.sampled_from("abc")), min_size=1, max_size=4))
    def check(member, lots, reward, requests):
        assert_same(pg_store, rules, now, member, lots, reward, requests)

    check()
    assert_ledger_clean(pg_store, now)


def test_a_pg_redemption_is_one_statement(pg_store, rules, now):
    """Member, reward, tier points and the spending: one call, one round trip (plus the
    unit of work's BEGIN and COMMIT, which the driver sends)."""
    msisdn, _ = twin_members(pg_store, now, rules, MEMBER, [(300, "bill", 1)] * 3)
    code, _ = twin_rewards(pg_store, now, rules, REWARD | dict(kind="gift", stock=5))
    statements = []
    event.listen(pg_store.engine, "before_cursor_execute",
                 lambda *args: statements.append(args[2]))
    with pg_store.unit_of_work() as uow:
        order = redeem(uow, rules, msisdn, code, "sms", "one", now)
    assert order.delivery.status == "pending" and order.points == 100
    assert len(statements) == 1, statements
