"""Consent and the monthly automatic redemption over SMS, end to end: SMSC simulator over TCP
-> sms_service -> real database -> the jobs -> the MT the member gets."""

from __future__ import annotations

import pytest_twisted

from core.accounts import balance, check_ledger
from core.redemption import recent_orders
from tests.core.jobs.conftest import drive, local
from tests.sms.channel_helpers import code_of, converse, member
from tests.sms.conftest import sleep
from tests.sms.test_channel_e2e import ZHANG


async def texts_after(ch, msisdn: str, before: int, timeout: float = 5.0) -> list[str]:
    await ch.sim.wait_for(lambda: len(ch.sim.texts_to(msisdn)) > before, timeout=timeout)
    return ch.sim.texts_to(msisdn)[before:]


@pytest_twisted.ensureDeferred
async def test_td_stops_warnings_and_kt_brings_them_back(channels, rules, config):
    ch = await channels().start()
    assert await converse(ch, ZHANG, "TD") == (
        "【积分服务】您已退订积分到期提醒及等级变更等通知短信，"
        "查询回复和订单短信照常发送。回复KT可重新开通。")
    # 800 of her points lapse after 31 Dec: the run of 1 Dec would warn her, but she said TD.
    ch.clock.advance(seconds=(local(2026, 12, 1) - ch.clock()).total_seconds())
    stopped = len(ch.sim.texts_to(ZHANG))
    first = drive(ch.store, rules, config, "expiry-warnings", ch.clock())
    assert first.counts.get("opted_out") == 1
    await sleep(0.5)
    assert len(ch.sim.texts_to(ZHANG)) == stopped
    assert await converse(ch, ZHANG, "开通") == "【积分服务】积分到期提醒已重新开通。回复TD可退订。"
    assert not member(ch, ZHANG).warning_opt_out
    ch.clock.advance(days=1)
    before = len(ch.sim.texts_to(ZHANG))
    second = drive(ch.store, rules, config, "expiry-warnings", ch.clock())
    assert second.counts.get("sms_30d") == 1
    warning = await texts_after(ch, ZHANG, before)
    assert len(warning) == 1 and "800" in warning[0] and "12月31日" in warning[0]


@pytest_twisted.ensureDeferred
async def test_start_in_english_turns_warnings_back_on(channels):
    ch = await channels().start()
    await converse(ch, "15800158000", "STOP")
    assert await converse(ch, "15800158000", "start") == (
        "Loyalty: points expiry reminders are on again. Text TD to stop them.")
    assert not member(ch, "15800158000").warning_opt_out


@pytest_twisted.ensureDeferred
async def test_an_sms_sign_up_is_served_by_the_next_monthly_run(channels, rules, config):
    ch = await channels().start()
    quote = await converse(ch, ZHANG, "ZD A02")
    otp = code_of(quote)
    assert quote == f"【积分自动兑换】开通每月自动兑换1GB流量包，请在10分钟内回复验证码{otp}确认。"
    # Nothing is signed up before the code comes back.
    assert drive(ch.store, rules, config, "auto-redeem",
                 local(2026, 11, 22, 12, 1)).counts["subscriptions"] == 0
    done = "【积分自动兑换】已开通每月自动兑换1GB流量包（积分足够时兑换）。回复QXZD可取消。"
    assert await converse(ch, ZHANG, otp) == done
    assert await converse(ch, ZHANG, otp) == done  # the same code again: the same answer
    ch.clock.advance(seconds=(local(2026, 12, 1, 9, 0) - ch.clock()).total_seconds())
    before = len(ch.sim.texts_to(ZHANG))
    run = drive(ch.store, rules, config, "auto-redeem", ch.clock())
    assert run.counts["redeemed"] == 1
    order = ch.run(recent_orders, ZHANG, limit=1)[0]
    assert order.reward_code == "A02" and order.points == 800
    assert ch.run(balance, ZHANG, ch.clock()).points == 9300 - 800
    notice = await texts_after(ch, ZHANG, before)
    assert notice == [f"【积分自动兑换】本月已为您自动兑换1GB流量包，扣减800积分，订单号"
                      f"{order.order_no}，剩余8500积分。正在为您办理，办理结果将短信通知您。"
                      f"回复MX查看积分明细。"]  # a data pack: applied by fulfilment next
    assert ch.run(check_ledger) == []
    # Cancelled: the next month's run leaves her alone.
    assert await converse(ch, ZHANG, "取消自动兑换") == "【积分自动兑换】您的每月自动兑换已取消。"
    assert await converse(ch, ZHANG, "QXZD") == "【积分自动兑换】您未开通每月自动兑换。"
    assert drive(ch.store, rules, config, "auto-redeem",
                 local(2027, 1, 1, 9, 0)).counts["subscriptions"] == 0


@pytest_twisted.ensureDeferred
async def test_sign_up_usage_and_unknown_reward(channels):
    ch = await channels().start()
    assert await converse(ch, "15800158000", "ZD") == (
        "Loyalty: to have a reward redeemed for you every month, text ZD+reward code, "
        "e.g. ZD A01. Text LB for the codes, QXZD to stop.")
    assert await converse(ch, "15800158000", "zd z99") == (
        "Loyalty: there is no reward Z99. Text LB for rewards.")
    # A sign-up code is not a redemption: replying with it redeems nothing now.
    otp = code_of(await converse(ch, "15800158000", "AUTO A02"))
    points = ch.run(balance, "15800158000", ch.clock()).points
    assert (await converse(ch, "15800158000", f"QR {otp}")).startswith(
        "Loyalty: 1 GB data pack will be redeemed for you every month")
    assert ch.run(balance, "15800158000", ch.clock()).points == points
