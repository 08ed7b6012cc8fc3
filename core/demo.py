"""A small demo programme: members in every tier and language, a catalogue, some history."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from core.accounts import credit_points, deduct_points, set_pin
from core.domain import Channel, LedgerKind, Member, Reward
from core.ports import UnitOfWork
from core.redemption import redeem
from core.rules import ProgrammeRules
from core.service_desk import update_delivery

DEMO_PIN = "1234"
DEMO_MEMBERS = (
    ("13800138000", "张伟", "zh"),
    ("13900139000", "李娜", "zh"),
    ("13700137000", "王芳", "zh"),
    ("15800158000", "Alice Chen", "en"),
    ("18600186000", "Bob Wong", "en"),
)
# Operator subscriber ids and delivery addresses (gifts go by post, so a gift needs one); the
# last member has no address, to show the hotline's and the SMS's guidance.
DEMO_LINES = {
    "13800138000": ("SUB-0000138000", "北京市朝阳区建国路88号SOHO现代城A座1203室"),
    "13900139000": ("SUB-0000139000", "上海市浦东新区世纪大道100号25楼"),
    "13700137000": ("SUB-0000137000", "广州市天河区体育西路191号中石化大厦B塔8楼"),
    "15800158000": ("SUB-0000158000", "Flat 12B, 8 Harbour Road, Wan Chai, Hong Kong"),
    "18600186000": ("SUB-0000186000", None),
}
DEMO_REWARDS = (
    Reward("A01", "100分钟国内通话", "100 minutes of calls", "service", 1000, None, None, None,
           None, 1, (("gold", 900), ("diamond", 800))),
    Reward("A02", "1GB流量包", "1 GB data pack", "service", 800, None, None, None, None, 2),
    Reward("A03", "20元话费", "20 yuan bill credit", "service", 2000, None, None, None, 3, 3),
    Reward("G01", "保温杯", "Thermos flask", "gift", 3000, 50, None, None, 2, 4),
    Reward("G02", "蓝牙耳机", "Bluetooth earphones", "gift", 12000, 10, None, None, 1, 5,
           (("diamond", 10000),)),
    Reward("V01", "视频会员月卡", "Video membership, 1 month", "voucher", 1500, 200, None, None,
           None, 6),
)


def load_demo(uow: UnitOfWork, rules: ProgrammeRules, now: datetime) -> list[Member]:
    """Load what is missing of the demo set and return the demo members.

    Running it again changes nothing: a member's history (points, penalty, orders) is only
    made when the member is new, and a reward only added when its code is not there, so a
    member the demo created keeps what happened to it since, and stock is not reset.
    """
    today = rules.today(now)
    last_year = date(today.year - 1, 6, 15)
    expiring = date(today.year - rules.programme.validity_years, 3, 1)
    stored = {m: uow.members.get_member(m, include_closed=True) for m, _, _ in DEMO_MEMBERS}
    new = {m for m, member in stored.items() if member is None}
    if new:
        uow.members.upsert_members([
            dict(msisdn=m, name=n, language=lang, tier_code=rules.tiers[0].code,
                 warning_opt_out=False, warning_channel="sms", pin_failures=0, created_at=now,
                 subscriber_id=DEMO_LINES[m][0], delivery_address=DEMO_LINES[m][1])
            for m, n, lang in DEMO_MEMBERS if m in new])
    for m, member in stored.items():
        # Demo sets loaded before lines had ids: only the blanks are filled, once.
        if member is not None and member.subscriber_id is None:
            uow.members.update_member(m, subscriber_id=DEMO_LINES[m][0],
                                      delivery_address=member.delivery_address
                                      or DEMO_LINES[m][1])
    for reward in DEMO_REWARDS:
        if uow.orders.get_reward(reward.code) is None:
            uow.orders.upsert_reward(reward)
    grants = {
        "13800138000": [(8000, "bill", today - timedelta(days=40)),
                        (4000, "tenure", expiring), (500, "ontime", last_year)],
        "13900139000": [(2500, "bill", today - timedelta(days=20)), (300, "partner", expiring)],
        "13700137000": [(16000, "bill", today - timedelta(days=60))],
        "15800158000": [(3000, "bill", today - timedelta(days=10)), (800, "tenure", expiring)],
        "18600186000": [(500, "bill", today - timedelta(days=5))],
    }
    for msisdn, lots in grants.items():
        if msisdn not in new:
            continue
        set_pin(uow, rules, msisdn, DEMO_PIN, now)
        for points, source, earned_on in lots:
            credit_points(uow, rules, msisdn, points, source, earned_on,
                          now - timedelta(days=1), reference=f"demo-{msisdn}-{source}",
                          channel=Channel.IMPORT)
    if "13800138000" in new:
        deduct_points(uow, rules, "13800138000", 200, LedgerKind.PENALTY, "late payment",
                      now - timedelta(hours=12), channel=Channel.JOB)
        order = redeem(uow, rules, "13800138000", "G01", Channel.SMS, "demo-order-1",
                       now - timedelta(hours=6))
        update_delivery(uow, rules, order.order_no, "shipped", "SF Express", "SF1234567890",
                        now - timedelta(hours=2))
    if "15800158000" in new:
        redeem(uow, rules, "15800158000", "A02", Channel.IVR, "demo-order-2",
               now - timedelta(hours=3))
    return [uow.members.get_member(m, include_closed=True) for m, _, _ in DEMO_MEMBERS]
