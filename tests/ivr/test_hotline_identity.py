"""Redemptions and call records when Asterisk call ids collide (two boxes without
``systemname``, or two simulated calls in the same second): each caller gets an order of their
own, and every call is recorded. Plus the two ways one call can confirm twice."""

# ruff: noqa: F811 - pytest fixtures imported from tests.ivr.hotline_kit
from __future__ import annotations

import json

import pytest_twisted
from twisted.internet import defer

from tests.ivr.hotline_kit import (  # noqa: F401 - fixtures
    EN_MEMBER,
    ZH_MEMBER,
    heard,
    logged_failures,
    rig,
    wrap_db,
)

REDEEM_A01 = "411" + "1234#" + "1"  # redeem, services, item 1 (A01), PIN, confirm
PRICE = {ZH_MEMBER: 900, EN_MEMBER: 1000}  # A01 at each member's tier price


def orders_of(rig, msisdn: str) -> list:
    with rig.store.unit_of_work(write=False) as uow:
        return [o for o in uow.orders.member_orders(msisdn, 100)
                if o.channel == "ivr" and not o.request_id.startswith("demo")]


def order_numbers_heard(result) -> list[str]:
    tokens = heard(result)
    return [tokens[i + 1][2:] for i, t in enumerate(tokens) if t == "redeem_accepted"]


def redeem_sms(rig, msisdn: str) -> list[dict]:
    return [json.loads(m["params"]) for m in rig.outbox(msisdn)
            if m["template"] == "redeem_done"]


@pytest_twisted.ensureDeferred
async def test_two_members_on_calls_with_one_uniqueid_each_get_their_own_order(
        rig, logged_failures):
    before = {m: rig.balance(m) for m in PRICE}
    calls = await defer.gatherResults([
        defer.ensureDeferred(rig.call(msisdn, REDEEM_A01 + "T", uniqueid="1764300000.17",
                                      language=lang))
        for msisdn, lang in ((ZH_MEMBER, "zh"), (EN_MEMBER, "en"))])
    await rig.settle()
    for msisdn, result in zip(PRICE, calls, strict=True):
        orders = orders_of(rig, msisdn)
        assert len(orders) == 1 and orders[0].msisdn == msisdn
        assert order_numbers_heard(result) == [orders[0].order_no]
        assert rig.balance(msisdn) == before[msisdn] - PRICE[msisdn]
        assert [s["order_no"] for s in redeem_sms(rig, msisdn)] == [orders[0].order_no]
    assert orders_of(rig, ZH_MEMBER)[0].order_no != orders_of(rig, EN_MEMBER)[0].order_no
    records = [r for r in rig.call_records() if r["uniqueid"] == "1764300000.17"]
    assert sorted(r["msisdn_masked"] for r in records) == ["138****8000", "158****8000"]
    assert all(r["ended_at"] is not None and "4:A01:confirm" in r["menu_path"]
               for r in records)
    assert logged_failures == []


@pytest_twisted.ensureDeferred
async def test_a_call_id_reused_later_keeps_both_call_records(rig):
    first = await rig.call(ZH_MEMBER, "2T", uniqueid="1764300000.18")
    second = await rig.call(EN_MEMBER, "3T", uniqueid=first.uniqueid, language="en")
    records = sorted((r for r in rig.call_records() if r["uniqueid"] == second.uniqueid),
                     key=lambda r: r["msisdn_masked"])
    assert [(r["msisdn_masked"], r["menu_path"][:1]) for r in records] == [
        ("138****8000", "2"), ("158****8000", "3")]
    assert all(r["ended_at"] is not None for r in records)


@pytest_twisted.ensureDeferred
async def test_two_confirmed_redemptions_of_one_item_in_one_call_are_two_orders(rig):
    before = rig.balance(ZH_MEMBER)
    result = await rig.call(ZH_MEMBER, REDEEM_A01 + REDEEM_A01 + "T")
    orders = orders_of(rig, ZH_MEMBER)
    assert len(orders) == 2 and orders[0].order_no != orders[1].order_no
    assert sorted(order_numbers_heard(result)) == sorted(o.order_no for o in orders)
    assert rig.balance(ZH_MEMBER) == before - 2 * PRICE[ZH_MEMBER]
    assert sorted(s["order_no"] for s in redeem_sms(rig, ZH_MEMBER)) == sorted(
        o.order_no for o in orders)


@pytest_twisted.ensureDeferred
async def test_a_replayed_confirmation_in_one_call_is_one_order(rig):
    # The redemption request reaches the database twice (a retry after a lost reply): the
    # second run is a replay of the first and must change nothing.
    proxy = wrap_db(rig)
    run = proxy.run

    def run_twice(use_case, *args, **kwargs):
        if use_case.__name__ != "redeem_with_sms":
            return run(use_case, *args, **kwargs)
        return run(use_case, *args, **kwargs).addCallback(
            lambda _: run(use_case, *args, **kwargs))

    proxy.run = run_twice
    before = rig.balance(ZH_MEMBER)
    result = await rig.call(ZH_MEMBER, REDEEM_A01 + "T")
    orders = orders_of(rig, ZH_MEMBER)
    assert len(orders) == 1 and order_numbers_heard(result) == [orders[0].order_no]
    assert rig.balance(ZH_MEMBER) == before - PRICE[ZH_MEMBER]
    assert [s["order_no"] for s in redeem_sms(rig, ZH_MEMBER)] == [orders[0].order_no]


@pytest_twisted.ensureDeferred
async def test_confirming_again_after_a_lost_reply_finds_the_order_already_made(rig):
    # The order is committed but its reply is lost: the caller hears a system error, goes
    # back and confirms the same item again, and is told the order that exists.
    proxy = wrap_db(rig)
    run = proxy.run
    lost: list = []

    def lose(order):
        lost.append(order)
        raise ConnectionError("the reply was lost")

    def lose_first_reply(use_case, *args, **kwargs):
        d = run(use_case, *args, **kwargs)
        if use_case.__name__ == "redeem_with_sms" and not lost:
            d.addCallback(lose)
        return d

    proxy.run = lose_first_reply
    before = rig.balance(ZH_MEMBER)
    result = await rig.call(ZH_MEMBER, REDEEM_A01 + REDEEM_A01 + "T")
    tokens = heard(result)
    assert tokens[tokens.index("k:1", tokens.index("redeem_confirm_keys")) + 1] == "err_system"
    orders = orders_of(rig, ZH_MEMBER)
    assert [o.order_no for o in orders] == [lost[0].order_no]
    assert order_numbers_heard(result) == [lost[0].order_no]
    assert rig.balance(ZH_MEMBER) == before - PRICE[ZH_MEMBER]
