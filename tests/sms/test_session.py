"""The ESME session against the SMSC simulator over real TCP on 127.0.0.1."""

from __future__ import annotations

import struct

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer, task

from sms.pdu import (
    ESME_RINVCMDID,
    ESME_RINVCMDLEN,
    ESME_RINVMSGLEN,
    ESME_RMSGQFUL,
    ESME_RTHROTTLED,
    ESME_RX_T_APPN,
    PduReader,
    decode_pdu,
    normalise_message_id,
)
from sms.session import NotBound, PermanentError, TemporaryError
from tests.sms.conftest import Cfg, bound_session, sleep

MSISDN = "13812345678"


async def send_reliably(esme, destination, text, attempts=100):
    """What the outbox does: retry a temporary failure once bound again."""
    for _ in range(attempts):
        try:
            return await esme.submit(destination, text)
        except TemporaryError:
            await sleep(0.02)
            await esme.whenBound()
    raise AssertionError("gave up")


@pytest_twisted.ensureDeferred
async def test_bind_submit_and_receipt_matched(sim, inbox, make_esme):
    sim.id_style, sim.receipt_id_style = "hex", "dec"  # ids differ in base between the two
    esme = make_esme()
    await esme.whenBound()
    assert esme.bound
    result = await esme.submit(MSISDN, "JF 12345")
    assert len(result.message_ids) == 1 and result.parts == 1
    await sim.wait_for(lambda: inbox.receipts)
    receipt = inbox.receipts[0]
    assert receipt.delivered and receipt.stat == "DELIVRD" and receipt.err == "000"
    assert receipt.id_keys & normalise_message_id(result.message_ids[0], hint="hex")
    assert receipt.fields.id != result.message_ids[0]  # the text used decimal
    assert sim.texts_to(MSISDN) == ["JF 12345"]
    assert sim.submits[0].registered_delivery == 1
    await sim.wait_for(lambda: sim.receipts_sent)
    assert sim.receipts_sent == [(result.message_ids[0], 0)]


@pytest_twisted.ensureDeferred
async def test_receipt_before_submit_resp_and_text_only_receipt(sim, inbox, make_esme):
    sim.receipt_before_resp, sim.receipt_tlvs = True, False
    sim.id_style, sim.receipt_id_style = "HEX", "zeros"
    esme = make_esme()
    await esme.whenBound()
    result = await esme.submit(MSISDN, "hello")
    assert len(inbox.receipts) == 1  # it arrived before the submit_sm_resp was processed
    receipt = inbox.receipts[0]
    assert receipt.message_state is None and receipt.fields.id.startswith("0")
    assert receipt.id_keys & normalise_message_id(result.message_ids[0])


@pytest_twisted.ensureDeferred
async def test_long_chinese_mt_is_received_exactly(sim, make_esme):
    text = ("您的积分余额为12,345分，其中1,200分将于2025年12月31日到期。"
            "回复DH加礼品代码兑换礼品。") * 3
    esme = make_esme()
    await esme.whenBound()
    result = await esme.submit(MSISDN, text)
    assert result.parts == 3 and result.data_coding == 8 and len(set(result.message_ids)) == 3
    assert sim.texts_to(MSISDN) == [text]
    assert [s.concat.seq for s in sim.submits] == [1, 2, 3]
    assert all(s.udh[:3] == b"\x05\x00\x03" for s in sim.submits)


@pytest_twisted.ensureDeferred
async def test_window_is_never_exceeded(sim, make_esme):
    sim.response_delay_s = 0.05
    esme = make_esme(window=3)
    await esme.whenBound()
    results = await defer.gatherResults(
        [defer.ensureDeferred(esme.submit(f"1380000{i:04d}", f"m{i}")) for i in range(12)])
    assert len(results) == 12
    assert sim.max_outstanding == 3


@pytest_twisted.ensureDeferred
async def test_throttle_slows_down_then_recovers(sim, make_esme):
    esme = make_esme(max_submit_rate=20.0, throttle_pause_s=0.3, window=2)
    await esme.whenBound()
    sim.throttle_next(1, after=3)
    texts = [f"msg {i}" for i in range(14)]
    await defer.gatherResults(
        [defer.ensureDeferred(send_reliably(esme, MSISDN, t)) for t in texts])
    assert sorted(sim.texts_to(MSISDN)) == sorted(texts)
    gaps = [b - a for a, b in zip(sim.submit_times, sim.submit_times[1:], strict=False)]
    throttled_at = sim.submit_statuses.index(ESME_RTHROTTLED)
    assert all(g >= 0.04 for g in gaps[:throttled_at])  # ~1/20 s spacing before
    assert gaps[throttled_at] >= 0.28  # paused after the throttle
    assert gaps[throttled_at + 1] >= 0.08  # then half the rate (~1/10 s)...
    assert min(gaps[-3:]) < gaps[throttled_at + 1]  # ...recovering with each success
    assert esme.protocol.rate.rate == pytest.approx(20.0)


@pytest_twisted.ensureDeferred
async def test_temporary_and_permanent_errors(sim, make_esme):
    esme = make_esme(window=1, throttle_pause_s=0.05)
    await esme.whenBound()
    sim.throttle_next(1, ESME_RMSGQFUL)
    with pytest.raises(TemporaryError) as exc:
        await esme.submit(MSISDN, "x")
    assert exc.value.status == ESME_RMSGQFUL
    sim.throttle_next(1, 0x0B)  # ESME_RINVDSTADR
    with pytest.raises(PermanentError) as exc:
        await esme.submit(MSISDN, "x")
    assert exc.value.status == 0x0B
    sim.throttle_next(1, ESME_RTHROTTLED, after=1)  # part 2 of 3 throttled: part 3 not sent
    before = len(sim.submit_statuses)
    with pytest.raises(TemporaryError):
        await esme.submit(MSISDN, "y" * 400)
    assert len(sim.submit_statuses) - before == 2


@pytest_twisted.ensureDeferred
async def test_response_timeouts_fail_then_link_is_dropped(sim, make_esme):
    esme = make_esme(response_timeout_s=0.2)
    await esme.whenBound()
    sim.never_respond = True
    with pytest.raises(TemporaryError, match="timeout"):
        await esme.submit(MSISDN, "one")
    assert esme.bound and sim.binds == 1
    results = await defer.DeferredList(
        [esme.submit(MSISDN, "two"), esme.submit(MSISDN, "three")], consumeErrors=True)
    assert all(not ok for ok, _ in results)
    sim.never_respond = False
    await sim.wait_for(lambda: sim.binds == 2)  # 3 timeouts in a row: dropped and rebound
    await esme.whenBound()
    await esme.submit(MSISDN, "four")
    assert sim.texts_to(MSISDN) == ["four"]


@pytest_twisted.ensureDeferred
async def test_enquire_link_both_ways(sim, make_esme):
    esme = make_esme(enquire_link_s=0.1, dead_link_s=0.6)
    await esme.whenBound()
    await sleep(1.0)  # idle far longer than dead_link_s: the enquire_links keep it alive
    assert sim.enquire_links_received >= 5
    assert sim.binds == 1 and esme.bound
    assert await sim.send_enquire_link() == 0


@pytest_twisted.ensureDeferred
async def test_dead_link_is_dropped_and_rebound(sim, make_esme):
    esme = make_esme(enquire_link_s=0.1, dead_link_s=0.4)
    await esme.whenBound()
    sim.mute = True  # black hole: nothing comes back
    await sleep(0.3)
    sim.mute = False
    await sim.wait_for(lambda: sim.binds == 2)
    await esme.whenBound()


@pytest_twisted.ensureDeferred
async def test_smsc_unbind_is_answered_then_rebind(sim, make_esme):
    esme = make_esme()
    await esme.whenBound()
    assert await sim.send_unbind() == 0
    await sim.wait_for(lambda: sim.binds == 2)
    await esme.whenBound()
    await esme.submit(MSISDN, "after rebind")


@pytest_twisted.ensureDeferred
async def test_garbage_gets_generic_nack(sim, make_esme):
    esme = make_esme()
    await esme.whenBound()
    assert await sim.send_garbage("command") == ESME_RINVCMDID
    assert await sim.send_garbage("body") == ESME_RINVMSGLEN
    assert esme.bound and sim.binds == 1  # survivable: still the same session
    assert await sim.send_garbage("length") == ESME_RINVCMDLEN  # no resync possible: drop
    await sim.wait_for(lambda: sim.binds == 2)
    assert sim.nacks_received == [ESME_RINVCMDID, ESME_RINVMSGLEN, ESME_RINVCMDLEN]


@pytest_twisted.ensureDeferred
async def test_drop_mid_burst_then_retry_accepts_each_message_once(sim, make_esme):
    esme = make_esme(window=4)
    await esme.whenBound()
    sim.drop_after_submits(5)
    texts = [f"reply {i}" for i in range(20)]
    await defer.gatherResults(
        [defer.ensureDeferred(send_reliably(esme, MSISDN, t)) for t in texts])
    assert sim.binds >= 2
    assert sorted(sim.texts_to(MSISDN)) == sorted(texts)  # each exactly once


@pytest_twisted.ensureDeferred
async def test_submit_when_not_bound_fails_temporarily(sim, make_esme):
    sim.refuse_binds(seconds=10)
    esme = make_esme()
    with pytest.raises(NotBound):
        await esme.submit(MSISDN, "x")
    assert issubclass(NotBound, TemporaryError)


@pytest_twisted.ensureDeferred
async def test_deliver_sm_resp_waits_for_the_callback(sim, inbox, make_esme, no_logged_errors):
    esme = make_esme()
    await esme.whenBound()
    stored = defer.Deferred()
    inbox.status = lambda: stored
    answered = sim.inject_mo(MSISDN, "JF")
    await sim.wait_for(lambda: inbox.mo)
    await sleep(0.1)
    assert not answered.called  # not acknowledged before the store said so
    stored.callback(0)
    assert await answered == 0
    mo = inbox.mo[0]
    assert (mo.text, mo.complete, mo.source_addr, mo.destination_addr) == (
        "JF", True, MSISDN, "10086")

    inbox.status = ESME_RTHROTTLED
    assert await sim.inject_mo(MSISDN, "JF") == ESME_RTHROTTLED
    assert inbox.mo[1].dedup_key == inbox.mo[0].dedup_key  # a redelivery looks the same

    def boom():
        raise RuntimeError("database down")

    inbox.status = boom
    assert await sim.inject_mo(MSISDN, "JF") == ESME_RX_T_APPN
    assert [str(e["log_failure"].value) for e in no_logged_errors] == ["database down"]
    no_logged_errors.clear()

    # A failed Deferred and an answer that is no status: also answered, 0x64.
    inbox.status = lambda: defer.fail(RuntimeError("store failed"))
    assert await sim.inject_mo(MSISDN, "JF") == ESME_RX_T_APPN
    inbox.status = lambda: "stored"
    assert await sim.inject_mo(MSISDN, "JF") == ESME_RX_T_APPN
    assert len(no_logged_errors) == 2
    no_logged_errors.clear()


@pytest.mark.parametrize("variant", [
    dict(), dict(ref16=True), dict(use_sar=True), dict(use_payload=True),
    dict(order=[3, 1, 1, 2]), dict(coding="gsm"),
])
@pytest_twisted.ensureDeferred
async def test_concatenated_mo_is_reassembled(sim, inbox, make_esme, variant):
    esme = make_esme()
    await esme.whenBound()
    text = "TS 我的积分没有到账😀，请核查！" * 6 if variant.get("coding") != "gsm" else (
        "TS my points are missing {since} May €" * 8)
    assert await sim.inject_mo(MSISDN, text, split_into=3, **variant) == 0
    complete = [m for m in inbox.mo if m.complete]
    assert len(complete) == 1 and complete[0].text == text
    assert complete[0].concat.total == 3
    assert all(not m.complete for m in inbox.mo if m is not complete[0])


@pytest_twisted.ensureDeferred
async def test_stop_service_unbinds_cleanly(sim, make_esme):
    esme = make_esme()
    await esme.whenBound()
    await esme.stopService()
    assert sim.received[-1] == "unbind"
    assert not esme.bound
    await sleep(0.2)
    assert sim.binds == 1  # no reconnect after a stop


_framed = st.builds(
    lambda cid, status, seq, body: struct.pack(">LLLL", 16 + len(body), cid, status, seq) + body,
    st.sampled_from([4, 5, 6, 9, 0x15, 0x102, 0x103, 0x80000000, 0x80000004, 0x80000009,
                     0x80000015, 0x0000FFFF]) | st.integers(0, 2**32 - 1),
    st.sampled_from([0, 0x58]), st.integers(0, 2**32 - 1), st.binary(max_size=80),
)


@given(st.lists(_framed | st.binary(max_size=64), max_size=12))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_never_crash_the_session(chunks):
    clock = task.Clock()
    proto, transport = bound_session(clock, Cfg())
    for chunk in chunks:
        proto.dataReceived(chunk)  # must not raise
    for frame in PduReader().feed(transport.value()):  # whatever we answered is valid SMPP
        assert isinstance(frame, bytes)
        assert decode_pdu(frame).command in ("generic_nack", "deliver_sm_resp",
                                             "data_sm_resp", "enquire_link_resp", "unbind_resp")
    clock.advance(100)
