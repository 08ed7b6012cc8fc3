"""Main-menu 4 (redeem) end to end: the happy path in both languages, every refusal, the PIN,
and a hang-up at every single step (only a confirmed redemption debits)."""

# ruff: noqa: F811 - pytest fixtures imported from tests.ivr.hotline_kit
from __future__ import annotations

import json
from dataclasses import replace
from datetime import date

import pytest
import pytest_twisted
from twisted.internet import defer

from core.accounts import get_member
from core.demo import DEMO_REWARDS
from core.domain import Reward
from tests.ivr.hotline_kit import (  # noqa: F401 - fixtures
    DIAMOND,
    EN_MEMBER,
    ZH_MEMBER,
    after,
    heard,
    logged_failures,
    rig,
    wrap_db,
)

REDEEM_A01 = "411" + "1234#" + "1"  # redeem, services, item 1 (A01), PIN, confirm


def orders_of(rig, msisdn: str) -> list:
    with rig.store.unit_of_work(write=False) as uow:
        return uow.orders.member_orders(msisdn, 100)


def set_reward(rig, code: str, **changes) -> None:
    reward = next(r for r in DEMO_REWARDS if r.code == code)
    with rig.store.unit_of_work() as uow:
        uow.orders.upsert_reward(replace(reward, **changes))


@pytest.mark.parametrize("msisdn,lang,price", [(ZH_MEMBER, "zh", 900), (EN_MEMBER, "en", 1000)])
@pytest_twisted.ensureDeferred
async def test_redeem_a_service_with_pin_and_confirmation(rig, msisdn, lang, price):
    before = rig.balance(msisdn)
    result = await rig.call(msisdn, REDEEM_A01, language=lang)
    tokens = heard(result)
    # the catalogue of category 1 was offered with the caller's tier price (gold pays 900)
    assert after(tokens, "redeem_categories")[:4] == ["redeem_categories", "k:1", "redeem_item",
                                                      "k:1"]
    assert after(tokens, "redeem_enter_pin")[:2] == ["redeem_enter_pin", "k:1234#"]
    assert after(tokens, "redeem_confirm_intro")[:6] == [
        "redeem_confirm_intro", "reward_a01", "redeem_confirm_for", f"#{price}",
        "redeem_confirm_keys", "k:1"]
    order = orders_of(rig, msisdn)[0]
    assert order.reward_code == "A01" and order.channel == "ivr" and order.points == price
    assert order.request_id == f"{result.uniqueid}:1:A01"
    assert after(tokens, "redeem_accepted")[:3] == ["redeem_accepted", f"d:{order.order_no}",
                                                   "redeem_applying_sms"]
    assert rig.balance(msisdn) == before - price
    sms = [m for m in rig.outbox(msisdn) if m["template"] == "redeem_done"]
    assert len(sms) == 1 and sms[0]["language"] == lang
    params = json.loads(sms[0]["params"])
    assert params["order_no"] == order.order_no and params["points"] == price
    assert params["balance_after"] == before - price and params["reward_code"] == "A01"
    assert rig.metrics.redemptions.labels(channel="ivr")._value.get() == 1
    record = next(r for r in rig.call_records() if r["uniqueid"] == result.uniqueid)
    assert record["menu_path"].startswith("4:A01:confirm")


@pytest_twisted.ensureDeferred
async def test_items_listed_in_catalogue_order_with_tier_prices(rig):
    result = await rig.call(DIAMOND, "41T")  # diamond: A01 costs 800
    tokens = after(heard(result), "redeem_item")
    assert tokens[:18] == [
        "redeem_item", "#1", "reward_a01", "redeem_costs", "#800", "unit_points",
        "redeem_item", "#2", "reward_a02", "redeem_costs", "#800", "unit_points",
        "redeem_item", "#3", "reward_a03", "redeem_costs", "#2000", "unit_points"]
    assert tokens[18] == "redeem_choose"


@pytest_twisted.ensureDeferred
async def test_a_gift_is_done_at_once_a_service_is_being_applied(rig):
    """Gifts are confirmed orders (shipped later, tracked by WL); services and vouchers are
    applied by the provisioning API, so the caller hears they are being applied."""
    gift = await rig.call(DIAMOND, "421" "1234#" "1")
    tokens = heard(gift)
    (order,) = [o for o in orders_of(rig, DIAMOND) if o.reward_code == "G01"]
    assert after(tokens, "redeem_success")[:4] == ["redeem_success", f"d:{order.order_no}",
                                                   "redeem_gift_address", "redeem_sms_sent"]
    assert "redeem_accepted" not in tokens
    service = await rig.call(DIAMOND, REDEEM_A01)
    assert "redeem_accepted" in heard(service) and "redeem_success" not in heard(service)


@pytest_twisted.ensureDeferred
async def test_cancel_with_2_debits_nothing(rig):
    before = rig.balance(ZH_MEMBER)
    result = await rig.call(ZH_MEMBER, "411" "1234#" "2")
    assert after(heard(result), "k:2")[:3] == ["k:2", "redeem_cancelled", "menu_main"]
    assert rig.balance(ZH_MEMBER) == before
    assert [o.reward_code for o in orders_of(rig, ZH_MEMBER)] == ["G01"]


@pytest_twisted.ensureDeferred
async def test_star_goes_back_and_an_empty_category_says_so(rig):
    set_reward(rig, "V01", stock=0)
    result = await rig.call(ZH_MEMBER, "43" "1*" "*" "T")
    tokens = heard(result)
    assert after(tokens, "k:3")[:3] == ["k:3", "redeem_category_empty", "redeem_categories"]
    # 1 then * at the item list: back to categories; * there: back to the main menu
    assert after(tokens, "k:1")[:2] == ["k:1", "redeem_item"]
    stars = [i for i, t in enumerate(tokens) if t == "k:*"]
    assert tokens[stars[0] + 1] == "redeem_categories"
    assert tokens[stars[1] + 1] == "menu_main"


@pytest_twisted.ensureDeferred
async def test_more_than_eight_items_page_with_9(rig):
    with rig.store.unit_of_work() as uow:
        for n in range(10):
            uow.orders.upsert_reward(Reward(f"S{n:02d}", f"服务{n}", f"Service {n}", "service",
                                            100 + n, None, None, None, None, 10 + n))
    before = rig.balance(ZH_MEMBER)
    # T: let page 1 play and say nothing; 9 (barging into the retry) for page 2; then 5
    result = await rig.call(ZH_MEMBER, "41" "T9" "T5" "1234#" "1")
    tokens = heard(result)
    codes = [t for t in tokens if t.startswith(("a:", "reward_"))]
    # page 1: A01 A02 A03 (recorded names) S00..S04 (8 items, no recording: spelled), then
    # "9 for more"; page 2: S05..S09
    assert codes[:8] == ["reward_a01", "reward_a02", "reward_a03", "a:S00", "a:S01", "a:S02",
                         "a:S03", "a:S04"]
    assert after(tokens, "redeem_more")[:5] == ["redeem_more", "redeem_choose", "timeout",
                                                "err_no_input", "k:9"]
    assert codes[8:13] == ["a:S05", "a:S06", "a:S07", "a:S08", "a:S09"]
    assert "redeem_more" not in after(tokens, "k:9")
    chosen = orders_of(rig, ZH_MEMBER)[0]
    assert chosen.reward_code == "S09" and rig.balance(ZH_MEMBER) == before - 109


@pytest.mark.parametrize("case,prompt", [
    ("insufficient", "redeem_insufficient"),
    ("limit", "redeem_limit_reached"),
])
@pytest_twisted.ensureDeferred
async def test_refusals_at_the_quote_go_back_to_the_categories(rig, case, prompt):
    if case == "insufficient":
        msisdn, keys = "18600186000", "411"  # 500 points, A01 costs 1000
    else:
        msisdn, keys = ZH_MEMBER, "421"  # G01: limit 2 per member, one already ordered
        set_reward(rig, "G01", per_member_limit=1)
    before = rig.balance(msisdn)
    result = await rig.call(msisdn, keys + "T")
    tokens = heard(result)
    assert after(tokens, prompt)[:2] == [prompt, "redeem_categories"]
    assert "redeem_enter_pin" not in tokens
    assert rig.balance(msisdn) == before


@pytest.mark.parametrize("race,prompt", [
    ("stock", "redeem_out_of_stock"),
    ("window", "redeem_not_available"),
])
@pytest_twisted.ensureDeferred
async def test_a_race_lost_after_the_confirmation_is_told_and_debits_nothing(rig, race, prompt):
    proxy = wrap_db(rig)

    def lose_the_race(uow, rules):
        reward = uow.orders.get_reward("A01")
        if race == "stock":
            uow.orders.upsert_reward(replace(reward, stock=0))
        else:
            uow.orders.upsert_reward(replace(reward, available_until=date(2020, 1, 1)))

    proxy.before["redeem_with_sms"] = lose_the_race
    before = rig.balance(ZH_MEMBER)
    result = await rig.call(ZH_MEMBER, REDEEM_A01 + "T")
    assert after(heard(result), "k:1")[-1] != "redeem_accepted"
    assert prompt in heard(result)
    assert "redeem_accepted" not in heard(result)
    assert rig.balance(ZH_MEMBER) == before


@pytest_twisted.ensureDeferred
async def test_wrong_pin_then_right_pin(rig):
    before = rig.balance(ZH_MEMBER)
    result = await rig.call(ZH_MEMBER, "411" "9999#" "1234#" "1")
    tokens = heard(result)
    assert after(tokens, "k:9999#")[:3] == ["k:9999#", "auth_wrong_pin", "k:1234#"]
    assert rig.balance(ZH_MEMBER) == before - 900


@pytest_twisted.ensureDeferred
async def test_three_wrong_pins_lock_the_pin_and_debit_nothing(rig):
    before = rig.balance(ZH_MEMBER)
    result = await rig.call(ZH_MEMBER, "411" "1111#" "2222#" "3333#" "2T")
    tokens = heard(result)
    assert after(tokens, "k:1111#")[:6] == ["k:1111#", "auth_wrong_pin", "k:2222#",
                                            "auth_wrong_pin", "k:3333#", "auth_pin_locked"]
    # the member may still use the other menus
    assert after(tokens, "auth_pin_locked")[:3] == ["auth_pin_locked", "menu_main", "k:2"]
    member = rig.run(get_member, ZH_MEMBER)
    assert member.pin_locked_until is not None and member.pin_locked_until > rig.now
    assert rig.balance(ZH_MEMBER) == before
    # the right PIN while locked is refused too
    result = await rig.call(ZH_MEMBER, "411" "1234#" "T")
    assert after(heard(result), "k:1234#")[:2] == ["k:1234#", "auth_pin_locked"]
    assert rig.balance(ZH_MEMBER) == before


@pytest_twisted.ensureDeferred
async def test_no_pin_entered_is_retried_then_an_agent(rig):
    result = await rig.call(ZH_MEMBER, "411" "TTTT")
    tokens = after(heard(result), "redeem_enter_pin")
    assert [t for t in tokens if t.startswith("err_")] == [
        "err_no_input", "err_help", "err_help", "err_too_many"]
    assert result.variables_set["LOYALTY_NEXT"] == "agent"


@pytest_twisted.ensureDeferred
async def test_hangup_at_every_step_only_a_confirmed_redemption_debits(rig, logged_failures):
    full = await rig.call(ZH_MEMBER, REDEEM_A01)
    success = full.commands.index('STREAM FILE "loyalty/redeem_accepted" "#"')
    confirm_step = success  # 1-based number of the command whose reply carried the "1"
    assert full.commands[confirm_step - 1] == (
        'STREAM FILE "loyalty/redeem_confirm_keys" "0123456789*#"')
    balance = rig.balance(ZH_MEMBER)
    orders = len(orders_of(rig, ZH_MEMBER))
    for step in range(1, confirm_step + 2):
        result = await rig.call(ZH_MEMBER, REDEEM_A01, hangup_at_command=step)
        assert result.hung_up_by == "caller", step
        assert len(result.commands) <= step + 1, (step, result.commands)
        if step >= confirm_step:
            balance -= 900
            orders += 1
        assert rig.balance(ZH_MEMBER) == balance, step
        assert len(orders_of(rig, ZH_MEMBER)) == orders, step
        record = next(r for r in rig.call_records() if r["uniqueid"] == result.uniqueid)
        assert record["outcome"] == "hangup" and record["ended_at"] is not None
        assert ("confirm" in record["menu_path"]) == (step >= confirm_step), step
    # each confirmed call's SMS was queued even though the caller hung up on the order number
    assert len([m for m in rig.outbox(ZH_MEMBER) if m["template"] == "redeem_done"]) == 3
    assert logged_failures == []


@pytest_twisted.ensureDeferred
async def test_an_order_has_its_sms_even_if_the_server_dies_right_after(rig):
    # Nothing after the write that creates the order reaches the database (the process died
    # there): the SMS confirmation must have been written with the order, not after it.
    proxy = wrap_db(rig)
    dead: list = []
    run = proxy.run

    def run_until_dead(use_case, *args, **kwargs):
        if dead:
            return defer.fail(ConnectionError("the server process is gone"))
        d = run(use_case, *args, **kwargs)
        d.addCallback(lambda result: (dead.append(result) if hasattr(result, "order_no")
                                      else None, result)[1])
        return d

    proxy.run = run_until_dead
    await rig.call(ZH_MEMBER, REDEEM_A01 + "T")
    orders = [o for o in orders_of(rig, ZH_MEMBER) if o.channel == "ivr"]
    assert dead and [o.order_no for o in orders] == [dead[0].order_no]
    sms = {m["dedupe_key"] for m in rig.outbox(ZH_MEMBER)}
    assert f"redeem_done:{orders[0].order_no}" in sms


@pytest_twisted.ensureDeferred
async def test_the_same_confirmation_replayed_debits_once(rig):
    first = await rig.call(ZH_MEMBER, REDEEM_A01)
    balance = rig.balance(ZH_MEMBER)
    spoken = [t for t in heard(first) if t.startswith("d:")]
    # the same call id confirming the same reward again (a replayed request): same order
    again = await rig.call(ZH_MEMBER, REDEEM_A01, uniqueid=first.uniqueid)
    assert [t for t in heard(again) if t.startswith("d:")] == spoken
    assert rig.balance(ZH_MEMBER) == balance


@pytest_twisted.ensureDeferred
async def test_a_member_without_a_pin_is_sent_to_an_agent(rig):
    with rig.store.unit_of_work() as uow:
        uow.members.upsert_members([dict(msisdn="13300133000", name="No PIN", language="zh",
                                         tier_code="standard", created_at=rig.now)])
    from core.accounts import credit_points

    rig.run(credit_points, "13300133000", 5000, "bill", date(2026, 10, 1), rig.now)
    result = await rig.call("13300133000", "411" "1234#")
    assert after(heard(result), "k:1234#")[:2] == ["k:1234#", "auth_pin_not_set"]
    assert result.variables_set["LOYALTY_NEXT"] == "agent"
    assert rig.balance("13300133000") == 5000
