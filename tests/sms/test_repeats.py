"""Asking twice gets two answers: the same text from the same number inside the redelivery
window (``smpp.mo_dedupe_window_s``) is never met with silence. Over real TCP with the SMSC
simulator."""

from __future__ import annotations

import pytest_twisted

from core.accounts import balance
from core.redemption import recent_orders
from tests.sms.channel_helpers import NOW, code_of, converse

ZHANG = "13800138000"
ALICE = "15800158000"


@pytest_twisted.ensureDeferred
async def test_a_question_asked_twice_is_answered_twice(channels):
    ch = await channels().start()
    first = await converse(ch, ZHANG, "JF")
    assert first.startswith("【积分查询】您的可用积分为9300分")
    ch.clock.advance(seconds=30)
    assert await converse(ch, ZHANG, "JF") == first


@pytest_twisted.ensureDeferred
async def test_a_repeated_request_gets_the_first_outcome_again(channels):
    ch = await channels().start()
    quote = await converse(ch, ALICE, "DH V01")
    assert await converse(ch, ALICE, "DH V01") == quote  # the same code, not a second one
    otp = code_of(quote)
    done = await converse(ch, ALICE, otp)
    order = ch.run(recent_orders, ALICE, limit=1)[0]
    assert order.order_no in done
    assert await converse(ch, ALICE, otp) == done  # the same order number
    assert ch.run(balance, ALICE, NOW).points == 1500  # debited once
    ticket = await converse(ch, ZHANG, "TS 礼品太慢")
    assert await converse(ch, ZHANG, "TS 礼品太慢") == ticket  # the same reference
    assert "TS261122000001" in ticket


@pytest_twisted.ensureDeferred
async def test_the_code_sent_again_after_try_again_in_a_minute_is_acted_on(channels):
    ch = await channels(mo_rate_limit=2).start()
    otp = code_of(await converse(ch, ALICE, "DH V01"))
    await converse(ch, ALICE, "JF")
    assert await converse(ch, ALICE, otp) == (
        "Loyalty: you are sending messages too fast. Please try again in a minute.")
    ch.clock.advance(seconds=61)  # as told; still inside the 120 s redelivery window
    done = await converse(ch, ALICE, otp)
    order = ch.run(recent_orders, ALICE, limit=1)[0]
    assert done == (f"Loyalty: you redeemed Video membership, 1 month for 1500 points, "
                    f"order {order.order_no}; 1500 points left. It is being applied; you will "
                    f"get an SMS when it is done.")
