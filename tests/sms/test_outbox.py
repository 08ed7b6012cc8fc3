"""The outbox sender over real TCP against the simulator: throttling, dropped links, restarts,
several senders, permanent errors, receipts (id styles, receipt before response), the IVR's
SMS copies."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

import pytest
import pytest_twisted
from twisted.internet import defer

from core.service_desk import queue_sms
from sms.outbox import SenderSettings, outbox_depth
from sms.pdu import ESME_RTHROTTLED
from tests.sms.channel_helpers import NOW, Channel, Clock
from tests.sms.conftest import sleep

BASE = 13900000000
ESME_RINVDSTADR = 0x0B  # invalid destination address: permanent
LONG = ("Loyalty: this is a deliberately long notice that needs two GSM parts, so that a "
        "link lost between its parts shows whether a part is ever sent twice. It is exactly "
        "what a handset must show once, in order, and nothing more.")


def number(i: int) -> str:
    return str(BASE + i)


@pytest.fixture
def channels(sim, store, rules, config):
    made: list[Channel] = []

    def make(**kwargs) -> Channel:
        ch = Channel(sim, store, rules, config, **kwargs)
        made.append(ch)
        return ch

    yield make
    for ch in made:
        pytest_twisted.blockon(defer.ensureDeferred(ch.stop()))


def queue(ch: Channel, n: int, *, start: int = 1, long_every: int = 0, **kwargs) -> list[str]:
    """Queue one message to each of n numbers (every ``long_every``-th one two parts long)."""
    numbers = []
    for i in range(start, start + n):
        body = LONG if long_every and i % long_every == 0 else f"Loyalty notice {i}"
        ch.run(queue_sms, number(i), NOW, body=body, language="en", **{"kind": "test", **kwargs})
        numbers.append(number(i))
    return numbers


def states(ch: Channel) -> Counter:
    return Counter(r["state"] for r in ch.outbox())


async def all_delivered(ch: Channel, sim, numbers: list[str], timeout: float = 15.0) -> None:
    await sim.wait_for(lambda: all(sim.texts_to(n) for n in numbers), timeout=timeout)
    await ch.idle()
    for n in numbers:
        assert len(sim.texts_to(n)) == 1, (n, sim.texts_to(n))
    # No part was accepted twice either.
    keys = Counter((s.destination, s.concat.seq if s.concat else 1) for s in sim.submits)
    assert max(keys.values()) == 1


@pytest_twisted.ensureDeferred
async def test_throttling_slows_down_then_everything_goes(channels, sim):
    ch = channels()
    numbers = queue(ch, 30)
    sim.throttle_next(8, ESME_RTHROTTLED, after=5)
    await ch.start()
    await all_delivered(ch, sim, numbers)
    assert sim.submit_statuses.count(ESME_RTHROTTLED) == 8
    assert ch.metric("loyalty_smpp_throttled_total") == 8
    # The session paused (1 s) after the throttle answers: slowed down, then recovered.
    times = sim.submit_times
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) >= 0.9
    assert times[-1] - times[0] < 5
    await sim.wait_for(lambda: states(ch) == {"delivered": 30})
    retried = [r for r in ch.outbox() if r["attempts"] > 1]
    assert retried and all(r["error"] is None for r in retried)


@pytest_twisted.ensureDeferred
async def test_a_link_dropped_mid_burst_still_sends_everything_exactly_once(channels, sim):
    ch = channels()
    numbers = queue(ch, 60, long_every=5)
    sim.drop_after_submits(25)
    await ch.start()
    await all_delivered(ch, sim, numbers)
    assert sim.binds == 2
    assert len(sim.submits) == 60 + 12  # 12 two-part messages
    assert {n: sim.texts_to(n)[0] for n in numbers[4::5]} == {n: LONG for n in numbers[4::5]}
    await sim.wait_for(lambda: set(states(ch)) == {"delivered"})  # receipts after the rebind


@pytest_twisted.ensureDeferred
async def test_a_part_accepted_before_the_drop_is_not_sent_again(channels, sim):
    ch = channels()
    (n,) = queue(ch, 1, start=5, long_every=5)  # one two-part message
    sim.drop_after_submits(1)  # part 1 accepted, then the link goes
    await ch.start()
    await all_delivered(ch, sim, [n])
    assert sim.texts_to(n) == [LONG]
    assert [s.concat.seq for s in sim.submits] in ([1, 2], [2, 1])
    await sim.wait_for(lambda: ch.outbox(n)[0]["state"] == "delivered")
    assert len(json.loads(ch.outbox(n)[0]["message_ids"])) == 2


@pytest_twisted.ensureDeferred
async def test_a_restart_with_a_full_outbox_sends_it_all_once(channels, sim):
    first = channels(window=4)
    numbers = queue(first, 80)
    sim.response_delay_s = 0.02  # about 200 submits a second through a window of 4
    await first.start()
    await sim.wait_for(lambda: len(sim.messages) >= 15)
    await first.stop()
    sent_before = len(sim.messages)
    assert 15 <= sent_before < 80
    assert "sending" not in states(first)  # claims were given back on the way out
    second = channels(window=4, clock=first.clock)
    await second.start()
    await all_delivered(second, sim, numbers)
    assert len(sim.messages) == 80


@pytest_twisted.ensureDeferred
async def test_a_claim_left_by_a_dead_process_lapses_and_is_sent(channels, sim, store):
    clock = Clock()
    ch = channels(clock=clock)
    numbers = queue(ch, 3)
    from sqlalchemy import update

    from core.store.tables import outbox

    with store.unit_of_work() as uow:  # claimed by a process that then died
        uow.conn.execute(update(outbox).values(state="sending", attempts=1,
                                               claimed_until=NOW + timedelta(seconds=30)))
    await ch.start()
    await sleep(0.3)
    assert sim.messages == []
    clock.advance(seconds=31)
    await all_delivered(ch, sim, numbers)
    assert [r["attempts"] for r in ch.outbox()] == [2, 2, 2]


@pytest_twisted.ensureDeferred
async def test_two_senders_share_the_outbox_without_sending_twice(channels, sim):
    small = SenderSettings(max_in_flight=8, poll_s=0.02, retry_base_s=0.05, retry_max_s=0.5)
    a, b = channels(sender=small), channels(sender=small)
    # Both bound before anything is due: queued first, the faster one to bind could take
    # all 120 (each may hold 8) before the other starts, and nothing would be shared.
    await defer.gatherResults([defer.ensureDeferred(a.start()),
                               defer.ensureDeferred(b.start())])
    # Each submit_sm answered after 10 ms: a sender holding its 8 cannot take the next rows
    # before the other's poll (otherwise one quick sender may send all 120 alone).
    sim.response_delay_s = 0.01
    numbers = queue(a, 120, long_every=7)
    await all_delivered(a, sim, numbers)
    await b.idle()
    assert a.sms.sender.submitted > 0 and b.sms.sender.submitted > 0
    assert a.sms.sender.submitted + b.sms.sender.submitted == 120


@pytest_twisted.ensureDeferred
async def test_an_smsc_outage_loses_nothing(channels, sim):
    sim.refuse_binds(seconds=0.8)
    ch = channels()
    numbers = queue(ch, 10)
    await ch.start(wait_bound=False)
    await sleep(0.3)
    assert not ch.sms.bound and sim.messages == []
    numbers += queue(ch, 10, start=11)  # queued during the outage
    await all_delivered(ch, sim, numbers)
    assert ch.sms.bound


@pytest_twisted.ensureDeferred
async def test_a_permanent_error_is_recorded(channels, sim):
    ch = channels()
    numbers = queue(ch, 3)
    sim.throttle_next(1, ESME_RINVDSTADR)
    await ch.start()
    await sim.wait_for(lambda: len(sim.messages) == 2)
    await ch.idle()
    failed = [r for r in ch.outbox() if r["state"] == "failed"]
    assert len(failed) == 1 and "0x0000000b" in failed[0]["error"]
    assert failed[0]["final_at"] is not None and len(sim.submit_statuses) == 3
    assert ch.metric("loyalty_sms_mt_total", outcome="failed") == 1
    assert len([n for n in numbers if sim.texts_to(n)]) == 2


@pytest_twisted.ensureDeferred
async def test_a_row_that_cannot_be_rendered_fails(channels, sim):
    ch = channels()
    ch.run(queue_sms, number(1), NOW, kind="test", template="no_such_template", params={})
    ch.run(queue_sms, number(2), NOW, kind="test", template="balance", params={})  # no points
    (ok,) = queue(ch, 1, start=3)
    await ch.start()
    await all_delivered(ch, sim, [ok])
    rows = {r["msisdn"]: r for r in ch.outbox()}
    assert rows[number(1)]["state"] == "failed"
    assert rows[number(1)]["error"].startswith("render: TemplateNotFound")
    assert rows[number(2)]["state"] == "failed"
    assert rows[number(2)]["error"].startswith("render: UndefinedError")


@pytest_twisted.ensureDeferred
async def test_outbox_depth_is_refreshed(channels, sim):
    ch = channels()
    for i in range(4):
        ch.run(queue_sms, number(i), NOW, kind="test", body="later",
               not_before=NOW + timedelta(hours=1))
    await ch.start()
    assert await ch.sms.refresh_metrics() == 4
    assert ch.metric("loyalty_outbox_depth") == 4
    assert ch.metric("loyalty_smpp_bound") == 1
    assert ch.run(outbox_depth) == 4


# --- delivery receipts -----------------------------------------------------------------------


@pytest.mark.parametrize(("id_style", "receipt_id_style", "tlvs"), [
    ("hex", "same", True), ("hex", "dec", False), ("HEX", "hex", False),
    ("dec", "zeros", False), ("dec", "hex", False),
])
@pytest_twisted.ensureDeferred
async def test_receipts_match_whatever_the_id_style(channels, sim, id_style,
                                                    receipt_id_style, tlvs):
    sim.id_style, sim.receipt_id_style, sim.receipt_tlvs = id_style, receipt_id_style, tlvs
    ch = channels()
    numbers = queue(ch, 6, long_every=3)
    await ch.start()
    await all_delivered(ch, sim, numbers)
    await sim.wait_for(lambda: states(ch) == {"delivered": 6})
    # (counted when the transaction that matched them reported back)
    await sim.wait_for(lambda: ch.metric("loyalty_sms_receipts_total", state="delivered") == 8)


@pytest_twisted.ensureDeferred
async def test_a_receipt_before_its_submit_response_is_matched(channels, sim):
    sim.receipt_before_resp = True
    ch = channels()
    numbers = queue(ch, 10, long_every=4)
    await ch.start()
    await all_delivered(ch, sim, numbers)
    await sim.wait_for(lambda: states(ch) == {"delivered": 10})
    with ch.store.unit_of_work(write=False) as uow:
        assert uow.messaging.held_receipts() == []


@pytest.mark.parametrize(("stat", "state"), [("UNDELIV", "undeliverable"),
                                             ("EXPIRED", "expired"), ("REJECTD", "rejected")])
@pytest_twisted.ensureDeferred
async def test_a_failed_delivery_is_the_final_state(channels, sim, stat, state):
    sim.receipt_stat = stat
    ch = channels()
    numbers = queue(ch, 2, long_every=2)
    await ch.start()
    await all_delivered(ch, sim, numbers)
    await sim.wait_for(lambda: states(ch) == {state: 2})
    await ch.idle()
    row = ch.outbox(numbers[1])[0]
    assert row["error"] == f"part 1/2 {stat} err:001" and row["final_at"] is not None
    await sim.wait_for(lambda: ch.metric("loyalty_sms_receipts_total", state=state) == 3)


@pytest_twisted.ensureDeferred
async def test_a_receipt_for_an_unknown_id_is_held_then_dropped(channels, sim):
    from sms.receipts import sweep_receipts

    ch = channels()
    await ch.start()
    rec = sim.accept(dict(destination_addr=number(1), source_addr="10086",
                          short_message=b"hi", registered_delivery=1), "deadbeef")
    sim.send_receipt(rec)
    await sim.wait_for(lambda: sim.receipts_sent)
    assert sim.receipts_sent == [("deadbeef", 0)]
    await ch.idle()
    with ch.store.unit_of_work(write=False) as uow:
        assert {h.message_id for h in uow.messaging.held_receipts()} == {"deadbeef"}
    assert ch.run(sweep_receipts, NOW + timedelta(minutes=11), 600) == {"unmatched": 1}


# --- the IVR's SMS copies --------------------------------------------------------------------

IVR_COPIES = [
    ("balance", "zh", {"points": 9300, "expiring_points": 800, "expiry_date": "2026-12-31"},
     "【积分查询】您的可用积分为9300分，其中800分将于2026年12月31日到期。回复LB查看礼品，DH+代码兑换。"),
    ("balance", "en", {"points": 500, "expiring_points": 0, "expiry_date": None},
     "Loyalty: you have 500 points. Text LB for rewards, DH+code to redeem."),
    ("tier", "zh", {"tier_code": "gold", "tier_name": "金卡会员", "valid_until": "2027-11-30",
                    "points_to_next": 7000, "next_tier_code": "diamond",
                    "next_tier_name": "钻石会员"},
     "【会员等级】您当前为金卡会员，有效期至2027年11月30日，再获得7000积分可升级为钻石会员。"),
    ("tier", "en", {"tier_code": "diamond", "tier_name": "Diamond", "valid_until": None,
                    "points_to_next": 0, "next_tier_code": None, "next_tier_name": None},
     "Loyalty: your tier is Diamond. You are at the top tier."),
    ("history", "en", {"entries": [
        {"date": "2026-11-22", "kind": "debit", "amount": -800, "reason": "redeem A02"},
        {"date": "2026-11-21", "kind": "credit", "amount": 3000, "reason": "bill"}]},
     "Loyalty, latest points:\n22 Nov redeemed -800\n21 Nov earned +3000"),
    ("history", "zh", {"entries": []}, "【积分明细】您暂无积分记录。"),
    ("delivery", "zh", {"orders": [
        {"order_no": "261122000001", "reward_code": "G01", "status": "in_transit",
         "courier": "SF Express", "tracking_no": "SF1234567890",
         "updated": "2026-11-22T02:00:00+00:00"},
        {"order_no": "261122000007", "reward_code": "G02", "status": "pending",
         "courier": None, "tracking_no": None, "updated": None}]},
     "【礼品物流】\n订单261122000001 G01：运输中，SF Express SF1234567890\n"
     "订单261122000007 G02：待发货"),
    ("redeem_done", "en", {"order_no": "261122000002", "reward_name": "1 GB data pack",
                           "points": 800, "balance_after": 2200},
     "Loyalty: you redeemed 1 GB data pack for 800 points, order 261122000002; "
     "2200 points left."),
    ("redeem_done", "zh", {"order_no": "261122000003", "reward_code": "A01", "points": 900},
     "【积分兑换】您已成功兑换A01，扣减900积分，订单号261122000003。"),
    # exactly what ivr/flows/redeem.py queues
    ("redeem_done", "zh", {"order_no": "261122000004", "reward_code": "G01",
                           "reward_name": "保温杯", "reward_kind": "gift", "points": 3000,
                           "balance": 6300, "channel": "ivr"},
     "【积分兑换】您已成功兑换保温杯，扣减3000积分，剩余6300分，订单号261122000004。回复WL查询物流。"),
]


@pytest_twisted.ensureDeferred
async def test_the_ivr_sms_copies(channels, sim):
    ch = channels()
    for i, (template, language, params, _) in enumerate(IVR_COPIES):
        ch.run(queue_sms, number(i), NOW, kind="ivr-copy", template=template, params=params,
               language=language)
    await ch.start()
    await all_delivered(ch, sim, [number(i) for i in range(len(IVR_COPIES))])
    for i, (template, _, _, expected) in enumerate(IVR_COPIES):
        assert sim.texts_to(number(i)) == [expected], template


@pytest_twisted.ensureDeferred
async def test_a_notice_backlog_reaching_the_quiet_hours_waits_for_the_morning(
        channels, sim, config):
    from core.jobs.expiry_warnings import KIND as WARNING

    evening = NOW.replace(hour=12, minute=59)  # 20:59 in Shanghai: quiet hours start at 21:00
    clock = Clock(evening)
    settings = SenderSettings(max_parts=3, max_in_flight=200, lease_s=30.0, poll_s=0.05,
                              retry_base_s=0.05, retry_max_s=0.5, quiet=config.jobs)
    ch = channels(clock=clock, sender=settings)
    early = queue(ch, 2, kind=WARNING, not_before=evening)
    await ch.start()
    await all_delivered(ch, sim, early)  # before 21:00 warnings go
    await ch.stop()
    # A backlog queued before 21:00 (an SMSC outage held it) and not yet sent at 21:00 ...
    late = queue(ch, 3, start=10, kind=WARNING, not_before=evening)
    reply = queue(ch, 1, start=20, kind="reply")
    clock.advance(minutes=2)
    ch = channels(clock=clock, sender=settings)
    await ch.start()
    await all_delivered(ch, sim, reply)  # ... while a reply to a subscriber still goes,
    await sleep(0.3)
    assert all(sim.texts_to(n) == [] for n in late)  # waits,
    morning = NOW.replace(day=NOW.day + 1, hour=0)  # 08:00 the next day in Shanghai
    assert {r["not_before"] for r in ch.outbox() if r["msisdn"] in late} == {morning}
    clock.advance(hours=11)  # ... and goes at 08:00
    await all_delivered(ch, sim, late + reply)


@pytest_twisted.ensureDeferred
async def test_rows_handed_over_after_their_claim_lapses_are_sent_once(channels, sim, store):
    clock = Clock()
    ch = channels(clock=clock)
    numbers = queue(ch, 3)
    until = NOW + timedelta(seconds=30)
    with store.unit_of_work() as uow:  # a batch claimed them; its result comes back late
        late = uow.messaging.claim_outbox(NOW, until, 10)
    await ch.start()
    clock.advance(seconds=25)  # within a third of the lease of lapsing
    ch.sms.sender.take(late, until)
    await sleep(0.3)
    assert sim.messages == []  # not sent on a claim that another sender may take over
    clock.advance(seconds=6)  # the claim lapsed: claimed again, sent by one sender only
    await all_delivered(ch, sim, numbers)
    assert [r["attempts"] for r in ch.outbox()] == [2, 2, 2]


@pytest_twisted.ensureDeferred
async def test_an_mt_that_keeps_being_refused_is_set_aside_and_the_rest_go(channels, sim):
    from sms.pdu import ESME_RMSGQFUL

    ch = channels(sender=SenderSettings(max_parts=3, max_in_flight=200, lease_s=30.0,
                                        poll_s=0.05, retry_base_s=0.05, retry_max_s=0.2,
                                        max_attempts=3))
    (stuck,) = queue(ch, 1)
    sim.throttle_next(3, ESME_RMSGQFUL)  # refused at every one of its 3 attempts
    await ch.start()
    await sim.wait_for(lambda: len(sim.submit_statuses) == 3, timeout=10)
    others = queue(ch, 3, start=2)
    await all_delivered(ch, sim, others)
    await sleep(0.5)
    rows = {r["msisdn"]: r for r in ch.outbox()}
    assert rows[stuck]["state"] == "set_aside" and rows[stuck]["attempts"] == 3
    assert "0x00000014" in rows[stuck]["error"] and not sim.texts_to(stuck)
    assert ch.metric("loyalty_sms_mt_total", outcome="set_aside") == 1
    # Ops put it back (loyalty queues retry mt:ID): it goes.
    with ch.store.unit_of_work() as uow:
        assert uow.release_set_aside("mt", rows[stuck]["id"], NOW)
    await all_delivered(ch, sim, [stuck])
