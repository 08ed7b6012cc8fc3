"""Line status and gifts' addresses on the hotline over FastAGI: what the caller heard (demo
data, both backends)."""

# ruff: noqa: F811 - pytest fixtures imported from tests.ivr.hotline_kit
from __future__ import annotations

import json

import pytest
import pytest_twisted

from tests.ivr.hotline_kit import (  # noqa: F401 - fixtures
    EN_MEMBER,
    ZH_MEMBER,
    after,
    heard,
    prompts_heard,
    rig,
)

NO_ADDRESS = "18600186000"  # Bob Wong, en, 500 points, no delivery address (core.demo)
STRANGER = "13312345678"


def set_line(rig, msisdn: str, **fields) -> None:
    with rig.store.unit_of_work() as uow:
        uow.members.update_member(msisdn, **fields)


def orders_of(rig, msisdn: str) -> list:
    with rig.store.unit_of_work(write=False) as uow:
        return uow.orders.member_orders(msisdn, 100)


@pytest.mark.parametrize("status", ["suspended", "arrears"])
@pytest_twisted.ensureDeferred
async def test_a_barred_line_hears_why_at_the_redeem_menu_and_goes_back(rig, status):
    set_line(rig, ZH_MEMBER, line_status=status)
    before = rig.balance(ZH_MEMBER)
    result = await rig.call(ZH_MEMBER, "4" "2T")  # redeem, then balance from the main menu
    tokens = heard(result)
    assert after(tokens, "k:4")[:3] == ["k:4", "redeem_line_barred", "menu_main"]
    assert "redeem_categories" not in tokens and "redeem_enter_pin" not in tokens
    assert after(tokens, "k:2")[:2] == ["k:2", "bal_is"]  # asking still works
    assert rig.balance(ZH_MEMBER) == before
    assert [o.reward_code for o in orders_of(rig, ZH_MEMBER)] == ["G01"]  # the demo's only
    record = next(r for r in rig.call_records() if r["uniqueid"] == result.uniqueid)
    assert "4:line_barred" in record["menu_path"]


@pytest_twisted.ensureDeferred
async def test_a_closed_line_is_treated_like_an_unknown_number(rig):
    set_line(rig, ZH_MEMBER, line_status="closed")
    closed = await rig.call(ZH_MEMBER, "T")
    stranger = await rig.call(STRANGER, "T")
    assert prompts_heard(closed) == prompts_heard(stranger)
    assert "auth_enter_number" in prompts_heard(closed) and "menu_main" not in heard(closed)
    # Keyed in from a withheld number, it is no member either.
    keyed = await rig.call(None, f"{ZH_MEMBER}#T")
    assert after(heard(keyed), f"k:{ZH_MEMBER}#")[:2] == [f"k:{ZH_MEMBER}#", "auth_not_member"]


@pytest_twisted.ensureDeferred
async def test_a_gift_without_an_address_is_refused_with_guidance(rig):
    result = await rig.call(NO_ADDRESS, "421" "T", language="en")  # redeem, gifts, G01
    tokens = heard(result)
    assert after(tokens, "redeem_address_needed")[:2] == ["redeem_address_needed",
                                                          "redeem_categories"]
    assert "redeem_enter_pin" not in tokens
    assert orders_of(rig, NO_ADDRESS) == []


@pytest_twisted.ensureDeferred
async def test_after_a_gift_the_caller_hears_it_goes_to_the_registered_address(rig):
    result = await rig.call(EN_MEMBER, "421" "1234#" "1", language="en")  # G01 for 3000
    order = orders_of(rig, EN_MEMBER)[0]
    assert order.reward_code == "G01"
    assert order.delivery_address == "Flat 12B, 8 Harbour Road, Wan Chai, Hong Kong"
    assert after(heard(result), "redeem_success")[:4] == [
        "redeem_success", f"d:{order.order_no}", "redeem_gift_address", "redeem_sms_sent"]
    sms = next(m for m in rig.outbox(EN_MEMBER) if m["template"] == "redeem_done")
    assert json.loads(sms["params"])["address"] == "Flat 1****g Kong"
