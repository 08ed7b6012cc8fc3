"""Line status and gifts' addresses on the SMS channel end to end: SMSC simulator over TCP ->
sms_service -> real database -> the text the subscriber gets (demo data, both backends)."""

from __future__ import annotations

import pytest
import pytest_twisted

from core.accounts import balance
from core.domain import mask_address
from core.redemption import recent_orders
from tests.sms.channel_helpers import NOW, code_of, converse

ZHANG = "13800138000"  # zh, 9300 points, has an address
ALICE = "15800158000"  # en, 3000 points
BOB = "18600186000"    # en, 500 points, no address
ZHANG_ADDRESS = "北京市朝阳区建国路88号SOHO现代城A座1203室"  # core.demo

BARRED_ZH = {
    "suspended": "【积分兑换】您的号码已停机，暂时不能兑换积分，仍可查询积分、明细和礼品。"
                 "号码恢复正常后即可兑换，如需帮助请致电客服热线。",
    "arrears": "【积分兑换】您的号码已欠费，暂时不能兑换积分，仍可查询积分、明细和礼品。"
               "缴清欠费后即可兑换，如需帮助请致电客服热线。",
}
JOIN_ZH = "【积分服务】您的号码尚未加入积分计划，请致电客服热线或到营业厅免费加入。"


def set_line(ch, msisdn: str, **fields) -> None:
    with ch.store.unit_of_work() as uow:
        uow.members.update_member(msisdn, **fields)


@pytest.mark.parametrize("status", ["suspended", "arrears"])
@pytest_twisted.ensureDeferred
async def test_a_barred_line_asks_but_cannot_redeem_by_sms(channels, status):
    ch = await channels().start()
    otp = code_of(await converse(ch, ZHANG, "DH A01"))  # a code sent while the line was active
    set_line(ch, ZHANG, line_status=status)
    assert (await converse(ch, ZHANG, "JF")).startswith("【积分查询】您的可用积分为9300分")
    # (another text than the first: a copy inside the redelivery window gets the same reply)
    assert await converse(ch, ZHANG, "DH A02") == BARRED_ZH[status]
    assert await converse(ch, ZHANG, otp) == BARRED_ZH[status]
    assert ch.run(balance, ZHANG, NOW).points == 9300
    assert [o.reward_code for o in ch.run(recent_orders, ZHANG)] == ["G01"]  # the demo's only


@pytest_twisted.ensureDeferred
async def test_a_suspended_english_member_is_told_in_english(channels):
    ch = await channels().start()
    set_line(ch, ALICE, line_status="suspended")
    assert await converse(ch, ALICE, "DH A02") == (
        "Loyalty: your line is suspended, so points cannot be redeemed for now. You can still "
        "check your balance, history and rewards. Once the line is active again you can "
        "redeem; call customer service for help.")


@pytest_twisted.ensureDeferred
async def test_a_closed_line_is_answered_like_an_unknown_number(channels):
    ch = await channels().start()
    set_line(ch, ZHANG, line_status="closed")
    for text in ("JF", "DH A01", "MX"):  # the batched balance path and the others
        assert await converse(ch, ZHANG, text) == JOIN_ZH
    assert ch.metric("loyalty_sms_mo_total", outcome="not_member") == 3


@pytest_twisted.ensureDeferred
async def test_a_gift_without_an_address_is_refused_with_guidance(channels):
    ch = await channels().start()
    assert await converse(ch, BOB, "DH G01") == (
        "Loyalty: gift G01 is sent by post and we have no delivery address for you. Call the "
        "hotline and press 0 for an agent, or contact customer care, to add one; then text "
        "DH G01 again.")
    assert ch.run(recent_orders, BOB) == []


@pytest_twisted.ensureDeferred
async def test_a_gift_order_keeps_the_address_and_the_sms_shows_it_masked(channels):
    ch = await channels().start()
    done = await converse(ch, ZHANG, code_of(await converse(ch, ZHANG, "DH G01")))
    order = ch.run(recent_orders, ZHANG, limit=1)[0]
    assert order.reward_code == "G01" and order.delivery_address == ZHANG_ADDRESS
    assert done == (f"【积分兑换】您已成功兑换保温杯，扣减3000积分，剩余6300分，"
                    f"订单号{order.order_no}。礼品将寄往北京市朝阳区****座1203室。"
                    f"回复WL查询物流。")
    assert mask_address(ZHANG_ADDRESS) in done and ZHANG_ADDRESS not in done


@pytest_twisted.ensureDeferred
async def test_a_reissued_number_does_not_see_the_old_owners_balance(channels, tmp_path):
    """The number goes to a new subscriber (another subscriber id on import): by SMS it has
    no points and no orders; the old owner's points stay with the archived account."""
    from core.imports import import_members

    ch = await channels().start()
    assert (await converse(ch, ZHANG, "JF")).startswith("【积分查询】您的可用积分为9300分")
    members = tmp_path / "members.csv"
    members.write_text(f"msisdn,name,language,subscriber_id\n{ZHANG},新用户,zh,SUB-NEW-1\n",
                       encoding="utf-8")
    ch.run(import_members, str(members), NOW)
    assert (await converse(ch, ZHANG, "jf")).startswith("【积分查询】您的可用积分为0分")
    assert ch.run(recent_orders, ZHANG) == []
    with ch.store.unit_of_work(write=False) as uow:
        assert uow.members.balance_summary("R000001", NOW)[0] == 9300
