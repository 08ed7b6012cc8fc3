"""The SMS channel end to end: SMSC simulator over TCP -> sms_service -> real database -> MT.

Every keyword in Mandarin and English with the exact text the subscriber gets, redemption by
one-time code, long replies, concatenated MO, duplicates, unknown numbers, the rate limit.
The programme clock starts at NOW (fixed dates) and runs with the reactor.
"""

from __future__ import annotations

import json
import re

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.logger import formatEvent, globalLogPublisher

from core.accounts import balance, check_ledger
from core.domain import Channel as Via
from core.redemption import recent_orders
from sms.encoding import DC_GSM, DC_UCS2
from tests.core.helpers import add_member
from tests.sms.channel_helpers import NOW, Channel, code_of, converse, member
from tests.sms.conftest import sleep

ZHANG = "13800138000"  # zh, gold, 9300 points, a shipped gift order
ALICE = "15800158000"  # en, standard, 3000 points
STRANGER = "13612345678"

HELP_ZH = ("【积分服务】回复：JF查积分，DJ查等级，MX查明细，LB看礼品，DH+代码兑换，WL查物流，"
           "BD+说明补登，TS+内容投诉，CX+受理号查进度，TD退订提醒，KT开通提醒，ZD+代码每月自动兑换，"
           "QXZD取消自动兑换，BZ帮助。")
HELP_EN = ("Loyalty SMS: JF balance, DJ tier, MX history, LB rewards, DH+code redeem, "
           "WL delivery, BD+text points claim, TS+text complaint, CX+ref status, "
           "TD stop reminders, KT resume them, ZD+code monthly auto-redeem, QXZD stop it, BZ help.")
BALANCE_ZH = ("【积分查询】您的可用积分为9300分，其中800分将于2026年12月31日到期。"
              "回复LB查看礼品，DH+代码兑换。")
TIER_ZH = "【会员等级】您当前为金卡会员，有效期至2027年11月30日，再获得7000积分可升级为钻石会员。"
HISTORY_ZH = ("【积分明细】近期记录：\n11月22日 兑换-3000\n11月22日 扣减-200\n11月21日 获得+500\n"
              "11月21日 获得+4000\n11月21日 获得+8000")
CATALOGUE_ZH = ("【积分礼品】代码 名称 所需积分：\nA01 100分钟国内通话 900分\nA02 1GB流量包 800分\n"
                "A03 20元话费 2000分\nG01 保温杯 3000分\nG02 蓝牙耳机 12000分\n"
                "V01 视频会员月卡 1500分\n回复DH+代码兑换，如DH A01")
DELIVERY_ZH = "【礼品物流】\n订单261122000001 保温杯：已发货，SF Express SF1234567890"

ZH_CONVERSATION = [
    ("JF", BALANCE_ZH), ("积分", BALANCE_ZH), ("ｊｆ？", BALANCE_ZH),
    ("DJ", TIER_ZH), ("等级", TIER_ZH),
    ("MX", HISTORY_ZH), ("明细", HISTORY_ZH),
    ("LB", CATALOGUE_ZH), ("礼品", CATALOGUE_ZH),
    ("WL", DELIVERY_ZH), ("物流", DELIVERY_ZH),
    ("BZ", HELP_ZH), ("帮助", HELP_ZH), ("HELP", HELP_ZH),
    ("你好", "抱歉，未能识别您的指令。" + HELP_ZH),
    ("DH", "【积分兑换】请回复DH+礼品代码兑换，如DH A01。回复LB查看礼品代码。"),
    ("DH Z99", "【积分兑换】礼品代码Z99不存在，回复LB查看礼品。"),
    ("兑换G02", "【积分兑换】您的积分9300分，不足以兑换G02（需12000分）。"),
    ("BD", "【积分补登】请回复BD+补登说明，如：BD 10月话费积分未到账。"),
    ("BD 10月话费积分未到账",
     "【积分补登】您的补登申请已受理，受理号BD261122000001，我们将尽快核实处理。"),
    ("补登：9月积分也没到",
     "【积分补登】您的补登申请已受理，受理号BD261122000002，我们将尽快核实处理。"),
    ("TS", "【投诉受理】请回复TS+投诉内容，如：TS 礼品未收到。"),
    ("投诉 礼品太慢", "【投诉受理】您的投诉已受理，受理号TS261122000003，我们将尽快与您联系。"),
    ("TS 客服电话打不通", "【投诉受理】您的投诉已受理，受理号TS261122000004，我们将尽快与您联系。"),
    ("QR", "【积分兑换】请直接回复短信中的6位验证码确认兑换。"),
    ("TD", "【积分服务】您已退订积分到期提醒及等级变更等通知短信，"
           "查询回复和订单短信照常发送。回复KT可重新开通。"),
    ("退订", "【积分服务】您已退订积分到期提醒及等级变更等通知短信，"
           "查询回复和订单短信照常发送。回复KT可重新开通。"),
]

BALANCE_EN = ("Loyalty: you have 3000 points; 3000 of them expire on 31 Dec 2028. "
              "Text LB for rewards, DH+code to redeem.")
TIER_EN = ("Loyalty: your tier is Silver, valid until 30 Nov 2027. "
           "3000 more points to reach Gold.")
HISTORY_EN = ("Loyalty, latest points:\n22 Nov redeemed -800\n21 Nov earned +800\n"
              "21 Nov earned +3000")
CATALOGUE_EN = ("Rewards (code, name, points):\nA01 100 minutes of calls 1000\n"
                "A02 1 GB data pack 800\nA03 20 yuan bill credit 2000\nG01 Thermos flask 3000\n"
                "G02 Bluetooth earphones 12000\nV01 Video membership, 1 month 1500\n"
                "Text DH+code to redeem, e.g. DH A01")

EN_CONVERSATION = [
    ("JF", BALANCE_EN), ("jf", BALANCE_EN), ("积分", BALANCE_EN),
    ("DJ", TIER_EN), ("等级", TIER_EN),
    ("MX", HISTORY_EN), ("明细", HISTORY_EN),
    ("LB", CATALOGUE_EN), ("礼品", CATALOGUE_EN),
    ("WL", "Loyalty: you have no gift orders."), ("物流", "Loyalty: you have no gift orders."),
    ("BZ", HELP_EN), ("帮助", HELP_EN), ("help", HELP_EN),
    ("what?", "Sorry, we did not understand that. " + HELP_EN),
    ("DH", "Loyalty: to redeem, text DH+reward code, e.g. DH A01. Text LB for the codes."),
    ("DH Z99", "Loyalty: there is no reward Z99. Text LB for rewards."),
    ("dh g02", "Loyalty: your 3000 points are not enough for G02 (12000 needed)."),
    ("BD", "Loyalty: text BD+details of the missing points, e.g. BD October bill points "
           "missing."),
    ("BD October bill points missing",
     "Loyalty: your points claim is registered, reference BD261122000001. "
     "We will check it soon."),
    ("补登 September too",
     "Loyalty: your points claim is registered, reference BD261122000002. "
     "We will check it soon."),
    ("TS", "Loyalty: text TS+your complaint, e.g. TS gift not received."),
    ("TS gift took ages", "Loyalty: your complaint is registered, reference TS261122000003. "
                          "We will contact you soon."),
    ("投诉 rude agent", "Loyalty: your complaint is registered, reference TS261122000004. "
                      "We will contact you soon."),
    ("QR", "Loyalty: please reply with the 6-digit code we sent you."),
    ("TD", "Loyalty: you will no longer get points expiry reminders or notices such as tier "
           "changes; replies and order messages still come. Text KT to turn them back on."),
    ("退订", "Loyalty: you will no longer get points expiry reminders or notices such as tier "
           "changes; replies and order messages still come. Text KT to turn them back on."),
]


def tickets(ch: Channel) -> list[tuple[str, str, str]]:
    from sqlalchemy import select

    from core.store.tables import tickets as t

    with ch.store.unit_of_work(write=False) as uow:
        return [(r.ref, r.kind, r.text) for r in uow.conn.execute(select(t).order_by(t.c.id))]


@pytest.mark.parametrize(("msisdn", "conversation"), [
    pytest.param(ZHANG, ZH_CONVERSATION, id="mandarin"),
    pytest.param(ALICE, EN_CONVERSATION, id="english"),
])
@pytest_twisted.ensureDeferred
async def test_every_keyword(channels, msisdn, conversation):
    ch = await channels().start()
    for text, expected in conversation:
        got = await converse(ch, msisdn, text)
        assert got == expected, f"{text!r} got {got!r}"
    assert member(ch, msisdn).warning_opt_out
    assert [kind for _, kind, _ in tickets(ch)] == ["makeup", "makeup", "complaint",
                                                    "complaint"]
    sent = [r for r in ch.outbox(msisdn) if r["kind"] == "reply"]
    assert len(sent) == len(conversation)
    assert ch.metric("loyalty_sms_mo_total", outcome="balance") == 3


@pytest_twisted.ensureDeferred
async def test_with_rounds_coalesced_messages_arriving_together_are_each_answered_once(
        channels, sim):
    # smpp.round_wait_ms > 0 (for SMSC windows of 50 or more): a round under a light load
    # waits for the timer; the MO it holds back must still each get their one reply.
    ch = await channels(round_wait_ms=200, round_items=16).start()
    assert (ch.sms.lane.round_wait_s, ch.sms.lane.round_items) == (0.2, 16)
    got = await defer.gatherResults([defer.ensureDeferred(converse(ch, number, "JF"))
                                     for number in (ZHANG, ALICE)])
    assert got == [BALANCE_ZH, BALANCE_EN]
    await ch.idle()
    assert [len(sim.texts_to(n)) for n in (ZHANG, ALICE)] == [1, 1]


@pytest_twisted.ensureDeferred
async def test_replies_use_gsm_when_possible_else_ucs2(channels, sim):
    ch = await channels().start()
    await converse(ch, ALICE, "JF")
    await converse(ch, ZHANG, "JF")
    by_dest = {s.destination: s.data_coding for s in sim.submits}
    assert by_dest == {ALICE: DC_GSM, ZHANG: DC_UCS2}


# --- redemption by one-time code -------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_redeem_with_the_code_once(channels):
    ch = await channels().start()
    quote = await converse(ch, ZHANG, "DH A01")
    otp = code_of(quote)
    assert quote == (f"【积分兑换】兑换100分钟国内通话需900积分（您现有9300分）。"
                     f"请在10分钟内回复验证码{otp}确认兑换。")
    done = await converse(ch, ZHANG, otp)
    order = ch.run(recent_orders, ZHANG, limit=1)[0]
    assert order.reward_code == "A01" and order.points == 900 and order.channel == Via.SMS
    # A service: debited now, applied by the provisioning API, so "being applied", not done.
    assert done == (f"【积分兑换】您兑换100分钟国内通话的申请已受理，扣减900积分，剩余8400分，"
                    f"订单号{order.order_no}。正在为您办理，办理结果将短信通知您。")
    # The same code again (as the member might): the same order, no second debit.
    again = await converse(ch, ZHANG, f"确认 {otp}")
    assert again == done
    assert ch.run(balance, ZHANG, NOW).points == 8400
    assert len(ch.run(recent_orders, ZHANG)) == 2  # the demo order and this one
    assert ch.run(check_ledger) == []
    assert ch.metric("loyalty_redemptions_total", channel="sms") == 1


@pytest_twisted.ensureDeferred
async def test_redeem_in_english_with_qr_and_full_width_code(channels):
    ch = await channels().start()
    quote = await converse(ch, ALICE, "DH V01")
    otp = code_of(quote)
    assert quote == (f"Loyalty: Video membership, 1 month costs 1500 points (you have 3000). "
                     f"To confirm, reply {otp} within 10 minutes.")
    wide = otp.translate({ord(c): 0xFF10 + int(c) for c in "0123456789"})
    done = await converse(ch, ALICE, f"qr {wide}")
    order = ch.run(recent_orders, ALICE, limit=1)[0]
    assert done == (f"Loyalty: you redeemed Video membership, 1 month for 1500 points, "
                    f"order {order.order_no}; 1500 points left. It is being applied; you will "
                    f"get an SMS when it is done.")
    gift = await converse(ch, ZHANG, "DH G01")
    done = await converse(ch, ZHANG, code_of(gift))
    assert done.endswith("回复WL查询物流。")


@pytest_twisted.ensureDeferred
async def test_wrong_codes_count_toward_the_lock(channels):
    ch = await channels().start()
    otp = code_of(await converse(ch, ALICE, "DH A02"))
    wrong = [c for c in ("000000", "111111", "222222", "333333") if c != otp]
    assert await converse(ch, ALICE, wrong[0]) == (
        "Loyalty: wrong or expired code, 2 tries left. Text DH+code for a new one.")
    assert await converse(ch, ALICE, f"QR {wrong[1]}") == (
        "Loyalty: wrong or expired code, 1 tries left. Text DH+code for a new one.")
    locked = await converse(ch, ALICE, wrong[2])
    assert re.fullmatch(r"Loyalty: too many wrong codes; redemption is paused until "
                        r"\d\d:\d\d\.", locked)
    assert member(ch, ALICE).pin_locked_until is not None
    # Even the right code is refused while locked, and nothing was spent.
    assert (await converse(ch, ALICE, otp)).startswith("Loyalty: too many wrong codes")
    assert ch.run(balance, ALICE, NOW).points == 3000


@pytest_twisted.ensureDeferred
async def test_an_expired_code_is_refused(channels):
    ch = await channels().start()
    otp = code_of(await converse(ch, ZHANG, "DH A02"))
    ch.clock.advance(minutes=11)
    assert await converse(ch, ZHANG, otp) == (
        "【积分兑换】验证码错误或已过期，还可尝试2次。请回复DH+代码重新获取。")
    assert ch.run(balance, ZHANG, NOW).points == 9300


# --- long replies and concatenated MO --------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_long_reply_reassembles_to_the_exact_text(channels, sim):
    ch = await channels().start()
    got = await converse(ch, ZHANG, "LB")
    assert got == CATALOGUE_ZH
    parts = [s for s in sim.submits if s.destination == ZHANG]
    assert len(parts) == 2 and {p.data_coding for p in parts} == {DC_UCS2}
    assert {p.concat.ref for p in parts} == {parts[0].concat.ref}
    assert sorted(p.concat.seq for p in parts) == [1, 2]
    assert "".join(p.text for p in sorted(parts, key=lambda p: p.concat.seq)) == CATALOGUE_ZH
    await ch.idle()
    row = [r for r in ch.outbox(ZHANG) if r["kind"] == "reply"][-1]
    assert len(json.loads(row["message_ids"])) == 2
    got = await converse(ch, ALICE, "LB")
    assert got == CATALOGUE_EN
    parts = [s for s in sim.submits if s.destination == ALICE]
    assert len(parts) == 2 and {p.data_coding for p in parts} == {DC_GSM}


@pytest_twisted.ensureDeferred
async def test_lists_are_cut_to_three_parts(channels, store, rules):
    from core.domain import Reward

    with store.unit_of_work() as uow:
        for i in range(20):
            uow.orders.upsert_reward(Reward(f"X{i:02d}", f"超长名称的测试礼品第{i}号款式",
                                            f"Test reward {i}", "service", 100 + i, None, None,
                                            None, None, 10 + i))
    ch = await channels().start()
    got = await converse(ch, ZHANG, "LB")
    assert got.startswith("【积分礼品】代码 名称 所需积分：\nA01 100分钟国内通话 900分\n")
    assert got.endswith("\n……\n回复DH+代码兑换，如DH A01")
    from sms.render import fits

    assert fits(got, 3) and not fits(got + "\nX19 超长名称的测试礼品第19号款式 119分", 3)


@pytest.mark.parametrize("how", [
    pytest.param({}, id="udh8"),
    pytest.param({"ref16": True}, id="udh16"),
    pytest.param({"use_sar": True}, id="sar"),
    pytest.param({"order": [3, 1, 2]}, id="out-of-order"),
])
@pytest_twisted.ensureDeferred
async def test_a_concatenated_mo_is_understood(channels, how):
    ch = await channels().start()
    text = "BD 上个月的话费积分和在网积分都没有到账，麻烦帮忙核实一下，谢谢！我的套餐是畅享99元。😀"
    reply = await converse(ch, ZHANG, text, split_into=3, **how)
    assert reply == "【积分补登】您的补登申请已受理，受理号BD261122000001，我们将尽快核实处理。"
    assert tickets(ch) == [("BD261122000001", "makeup", text[3:])]
    assert [r["text"] for r in ch.mo_rows()] == [text]


@pytest_twisted.ensureDeferred
async def test_a_concatenated_mo_straddling_a_restart_is_joined(channels, sim):
    ch = await channels().start()
    text = "TS " + "礼品已经等了三个星期还没有发货，物流也查不到任何信息，请尽快处理。" * 2
    assert await sim.inject_mo(ZHANG, text, split_into=3, order=[1, 2]) == 0
    await ch.restart()  # the in-memory reassembler forgets parts 1 and 2
    before = len(sim.texts_to(ZHANG))
    sim._mo_ref -= 1  # noqa: SLF001 - send part 3 of the same set (same reference)
    assert await sim.inject_mo(ZHANG, text, split_into=3, order=[3]) == 0
    await sim.wait_for(lambda: len(sim.texts_to(ZHANG)) > before)
    assert sim.texts_to(ZHANG)[-1].startswith("【投诉受理】您的投诉已受理")
    assert tickets(ch)[0][2] == text[3:]


# --- duplicates, strangers, the rate limit ---------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_redelivered_mo_is_acted_on_once_and_answered_alike(channels, sim):
    ch = await channels().start()
    text = "BD 8月积分未到账"
    statuses = [await sim.inject_mo(ZHANG, text) for _ in range(3)]  # the same PDU 3 times
    assert statuses == [0, 0, 0]
    await sim.wait_for(lambda: len(sim.texts_to(ZHANG)) == 3)
    await sleep(0.3)
    # One ticket; every copy gets its reference (a subscriber asking twice is not ignored).
    assert len(tickets(ch)) == 1 and len(ch.mo_rows()) == 3
    assert set(sim.texts_to(ZHANG)) == {
        "【积分补登】您的补登申请已受理，受理号BD261122000001，我们将尽快核实处理。"}
    assert ch.metric("loyalty_sms_mo_total", outcome="duplicate") == 2
    # A redelivered DH issues no second code either: the same code again.
    first = await converse(ch, ALICE, "DH A02")
    assert await converse(ch, ALICE, "DH A02") == first


@pytest_twisted.ensureDeferred
async def test_an_unknown_number_is_told_how_to_join(channels, sim):
    ch = await channels().start()
    assert await converse(ch, STRANGER, "JF") == (
        "【积分服务】您的号码尚未加入积分计划，请致电客服热线或到营业厅免费加入。")
    assert await sim.inject_mo("8613612345679", "DH A01") == 0
    await sim.wait_for(lambda: sim.texts_to("13612345679"))  # replies use the national form
    assert sim.texts_to("13612345679") == [
        "【积分服务】您的号码尚未加入积分计划，请致电客服热线或到营业厅免费加入。"]
    assert ch.metric("loyalty_sms_mo_total", outcome="not_member") == 2


@pytest_twisted.ensureDeferred
async def test_an_international_source_reaches_the_member(channels, sim):
    await channels().start()
    await sim.inject_mo("+8613800138000", "JF")
    await sim.wait_for(lambda: sim.texts_to(ZHANG))
    assert sim.texts_to(ZHANG) == [BALANCE_ZH]


@pytest_twisted.ensureDeferred
async def test_a_sender_outside_the_numbering_plan_is_stored_but_not_answered(channels, sim,
                                                                              store):
    add_member(store, "14155550100", name="Lookalike")  # what +1 415 555 0100 would mimic
    ch = await channels().start()
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        for text in ("JF", "DJ", "MX", "LB"):
            assert await sim.inject_mo("+14155550100", text) == 0  # stored, acknowledged
        assert await converse(ch, ZHANG, "JF") == BALANCE_ZH  # handled after the others
        await ch.idle()
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert sim.texts_to("14155550100") == [] and sim.texts_to("+14155550100") == []
    assert [r["state"] for r in ch.mo_rows() if r["msisdn"] == "+14155550100"] == ["handled"] * 4
    assert ch.metric("loyalty_sms_mo_total", outcome="invalid_source") == 4
    lines = [formatEvent(e) for e in events]
    refused = [line for line in lines if "numbering plan" in line]
    assert len(refused) == 1 and "+14*****0100" in refused[0]  # once, masked
    assert not [line for line in lines if "4155550100" in line]


@pytest_twisted.ensureDeferred
async def test_the_rate_limit_answers_once_then_stays_quiet(channels, sim):
    ch = await channels(mo_rate_limit=3).start()
    for text in ("积分", "JF", "jf"):  # (the same text again would be a redelivery)
        assert await converse(ch, ZHANG, text) == BALANCE_ZH
    assert await converse(ch, ZHANG, "JF?") == "【积分服务】您发送短信过于频繁，请1分钟后再试。"
    for text in ("DJ", "MX", "WL"):
        assert await sim.inject_mo(ZHANG, text) == 0
    await sleep(0.4)
    assert len(sim.texts_to(ZHANG)) == 4
    assert ch.metric("loyalty_sms_mo_total", outcome="rate_limited") == 4
    assert await converse(ch, ALICE, "JF") == BALANCE_EN  # other numbers are not affected
    ch.clock.advance(seconds=61)
    assert await converse(ch, ZHANG, "等级") == TIER_ZH


@pytest_twisted.ensureDeferred
async def test_mo_handled_after_a_crash_between_ack_and_handling(channels, sim, store):
    ch = channels()
    await ch.start()
    ch.sms.handler.stopService()  # acked and stored, never handled by this process
    assert await sim.inject_mo(ZHANG, "JF") == 0
    assert [r["state"] for r in ch.mo_rows()] == ["received"]
    await ch.restart()
    await sim.wait_for(lambda: sim.texts_to(ZHANG))
    assert sim.texts_to(ZHANG) == [BALANCE_ZH]
    assert [r["state"] for r in ch.mo_rows()] == ["handled"]


@pytest_twisted.ensureDeferred
async def test_a_database_failure_answers_throttled_so_the_smsc_retries(
        channels, sim, monkeypatch, no_logged_errors):
    import sms.handler

    real = sms.handler.store_mo_batch
    calls = []

    def failing_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database is locked")
        return real(*args, **kwargs)

    monkeypatch.setattr(sms.handler, "store_mo_batch", failing_once)
    ch = await channels().start()
    assert await sim.inject_mo(ZHANG, "JF") == 0x58  # ESME_RTHROTTLED: not stored, retry
    assert ch.mo_rows() == [] and sim.texts_to(ZHANG) == []
    assert ch.metric("loyalty_sms_mo_total", outcome="store_error") == 1
    assert await converse(ch, ZHANG, "JF") == BALANCE_ZH  # the SMSC's redelivery
    no_logged_errors.clear()  # the failure above was logged, as it should be
