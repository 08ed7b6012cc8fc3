"""SMPP peer faults against the SMSC simulator over real TCP on 127.0.0.1: disconnect storms,
throttling storms, responses slower than the timeout, garbage PDUs and SMSC-initiated unbinds,
each in the middle of a burst of MT messages sent by a retrying submitter (what the outbox
does: resubmit on TemporaryError once bound again). Every message is eventually accepted; the
SMSC holds each text exactly once where SMPP allows it, at least once where it cannot; and
the ESME still serves MO afterwards, with no MO acknowledged to the SMSC and lost."""

from __future__ import annotations

import gc
import itertools
from collections import Counter
from dataclasses import dataclass

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.internet.error import ConnectionLost

from sms.pdu import (
    ESME_RINVCMDID,
    ESME_RINVCMDLEN,
    ESME_RINVMSGLEN,
    ESME_RTHROTTLED,
    encode_pdu,
)
from sms.session import TemporaryError
from tests.faults.conftest import sleep, wait_until

MSISDN = "13812345678"


@dataclass
class Stats:
    temporary: int = 0  # TemporaryErrors seen (each one is a resubmission)
    timeouts: int = 0  # of which response timeouts


async def send_reliably(esme, destination: str, text: str, stats: Stats) -> None:
    for _ in range(500):
        try:
            await esme.submit(destination, text)
            return
        except TemporaryError as e:
            stats.temporary += 1
            stats.timeouts += "timeout" in str(e)
            await sleep(0.005)
            await esme.whenBound()
    raise AssertionError(f"{text!r} never accepted")


async def burst(esme, texts: list[str], destination: str = MSISDN,
                timeout: float = 20.0) -> Stats:
    stats = Stats()
    d = defer.gatherResults(
        [defer.ensureDeferred(send_reliably(esme, destination, t, stats)) for t in texts],
        consumeErrors=True)
    d.addTimeout(timeout, reactor)
    await d
    return stats


class MOProbe:
    """Sends an MO deliver_sm every ``interval`` s during a storm. One may fail (no bound
    session, link dropped before the deliver_sm_resp): the SMSC would redeliver it. But every
    MO the ESME acknowledged with status 0 must have reached on_deliver.

    (It calls the session's send_deliver itself: SMSCSimulator.inject_mo leaves an unhandled
    error behind when the link drops mid-delivery, see the xfail test below.)"""

    def __init__(self, sim, inbox, interval: float = 0.005) -> None:
        self.sim, self.inbox = sim, inbox
        self.acked: list[str] = []
        self.pending = 0
        self.n = itertools.count()
        self.loop = task.LoopingCall(self._inject)
        self.loop.start(interval, now=False)

    def _inject(self) -> None:
        session = self.sim.session
        if session is None:
            return
        text = f"JF {next(self.n)}"
        self.pending += 1
        d = session.send_deliver(dict(source_addr=MSISDN, destination_addr="10086",
                                      data_coding=0, esm_class=0, short_message=text.encode()))
        d.addCallbacks(lambda status: status == 0 and self.acked.append(text), lambda f: None)
        d.addBoth(self._settled)

    def _settled(self, _: object) -> None:
        self.pending -= 1

    async def stop_and_check(self) -> None:
        self.loop.stop()
        await wait_until(lambda: self.pending == 0, timeout=5)  # answered or failed, all
        seen = {m.text for m in self.inbox.mo}
        assert self.acked and set(self.acked) <= seen


async def mo_still_served(sim, esme, inbox) -> None:
    await wait_until(lambda: esme.bound and sim.session is not None, timeout=5)
    n = len(inbox.mo)
    assert await sim.inject_mo(MSISDN, "TS 积分没到账 😀") == 0
    assert [m.text for m in inbox.mo[n:]] == ["TS 积分没到账 😀"]
    assert await sim.inject_mo(MSISDN, "TS long " * 30, split_into=2) == 0
    assert inbox.mo[-1].complete and inbox.mo[-1].text == "TS long " * 30


def texts_of(n: int, tag: str) -> list[str]:
    return [f"{tag} reply {i}" for i in range(n)]


# -- disconnects ----------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_disconnect_storm_every_message_accepted_exactly_once(sim, inbox, esme_to):
    esme = esme_to(sim.port, inbox, window=4)
    await esme.whenBound()
    accepted = itertools.count(1)
    # The simulator drops the link right after every 4th accepted submit_sm; the responses
    # already written are flushed first, anything sent after them is ignored (not accepted).
    sim.take_drop = lambda: next(accepted) % 4 == 0
    sim.response_delay_s = 0.01  # each link lives a little while: MO gets through too
    probe = MOProbe(sim, inbox)
    texts = texts_of(48, "drop")
    stats = await burst(esme, texts)
    await probe.stop_and_check()
    sim.take_drop = lambda: False
    assert sim.binds >= 12 and stats.temporary > 0
    # A dropped link loses no response the SMSC wrote, so nothing is accepted twice.
    assert Counter(sim.texts_to(MSISDN)) == Counter(texts)
    await mo_still_served(sim, esme, inbox)


# -- throttling -----------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_throttling_storm_every_message_accepted_exactly_once(sim, inbox, esme_to):
    esme = esme_to(sim.port, inbox, window=4, throttle_pause_s=0.01)
    await esme.whenBound()
    sim.throttle_fraction = 0.5
    probe = MOProbe(sim, inbox)
    singles = texts_of(30, "throttle")
    # Three-part messages: a throttled part fails the message; its accepted parts stay an
    # incomplete set at the SMSC (never shown), and the resubmission is a new, complete set.
    longs = {f"1390000000{i}": f"long {i} " + "积分" * 90 for i in range(3)}
    stats = await burst(esme, singles)
    long_stats = await defer.gatherResults([
        defer.ensureDeferred(burst(esme, [text], destination=dest))
        for dest, text in longs.items()])
    await probe.stop_and_check()
    sim.throttle_fraction = 0.0
    throttled = sim.submit_statuses.count(ESME_RTHROTTLED)
    assert throttled >= 10 and stats.temporary > 0
    # Each throttled submit_sm failed its message (parts in flight together may share one).
    assert stats.temporary + sum(s.temporary for s in long_stats) <= throttled
    assert sim.binds == 1  # throttling never costs the session
    assert Counter(sim.texts_to(MSISDN)) == Counter(singles)
    for dest, text in longs.items():
        assert sim.texts_to(dest) == [text]
    await mo_still_served(sim, esme, inbox)


# -- responses slower than the timeout ----------------------------------------------------------


@pytest.mark.parametrize("max_timeouts", [3, 1000])
@pytest_twisted.ensureDeferred
async def test_responses_slower_than_the_timeout_every_message_accepted_at_least_once(
        sim, inbox, esme_to, max_timeouts):
    # max_timeouts=3: three timeouts in a row and the link is declared dead (late answers die
    # with it); 1000: the link stays up and the late answers arrive after the resubmission.
    esme = esme_to(sim.port, inbox, window=2, response_timeout_s=0.08,
                   max_timeouts=max_timeouts)
    await esme.whenBound()
    sim.response_delay_s = 0.2
    texts = texts_of(16, "slow")
    done = defer.ensureDeferred(burst(esme, texts))
    await sleep(0.7)  # timeouts and resubmissions
    sim.response_delay_s = 0.0
    stats = await done
    assert stats.timeouts > 0
    got = Counter(sim.texts_to(MSISDN))
    assert set(got) == set(texts)
    # At least once, not exactly once: a submit_sm answered after our timeout was accepted by
    # the SMSC while we reported it as a TemporaryError, so the outbox resubmits it. SMPP 3.4
    # has no idempotency key for submit_sm, so no ESME can tell; each extra copy stems from a
    # timed-out submit whose late answer came while the link was still up.
    duplicates = sum(got.values()) - len(texts)
    assert duplicates <= stats.timeouts
    if max_timeouts == 3:
        assert sim.binds >= 2  # declared dead and rebound
    else:
        assert sim.binds == 1 and duplicates > 0  # the scenario really produced late answers
    await mo_still_served(sim, esme, inbox)


# -- garbage --------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_garbage_pdus_mid_burst_are_nacked_and_the_session_goes_on(sim, inbox, esme_to):
    esme = esme_to(sim.port, inbox, window=4)
    await esme.whenBound()
    sim.response_delay_s = 0.01  # keep submits in flight while the garbage arrives
    texts = texts_of(40, "garbage")
    done = defer.ensureDeferred(burst(esme, texts))
    nacks = []
    for i in range(12):
        nacks.append(await sim.send_garbage("command" if i % 2 else "body"))
        await sleep(0.01)
    stats = await done
    assert nacks == [ESME_RINVMSGLEN, ESME_RINVCMDID] * 6
    assert sim.binds == 1 and stats.temporary == 0  # survivable: the same session throughout
    assert Counter(sim.texts_to(MSISDN)) == Counter(texts)
    await mo_still_served(sim, esme, inbox)


@pytest_twisted.ensureDeferred
async def test_impossible_command_length_mid_burst_rebinds(sim, inbox, esme_to):
    esme = esme_to(sim.port, inbox, window=4)
    await esme.whenBound()
    sim.response_delay_s = 0.01
    texts = texts_of(40, "framing")
    done = defer.ensureDeferred(burst(esme, texts))
    await wait_until(lambda: len(sim.submits) >= 10)
    assert await sim.send_garbage("length") == ESME_RINVCMDLEN
    stats = await done
    assert sim.binds == 2 and stats.temporary > 0
    got = Counter(sim.texts_to(MSISDN))
    assert set(got) == set(texts)
    # At least once: after a bad command_length there is no way to find the next PDU, so the
    # submit_sm_resp behind the garbage are unreadable; the submits they answered were
    # accepted but fail here as 'connection lost' and are resubmitted.
    assert sum(got.values()) - len(texts) <= stats.temporary
    await mo_still_served(sim, esme, inbox)


# -- unbind ---------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_smsc_unbind_mid_burst(sim, inbox, esme_to):
    esme = esme_to(sim.port, inbox, window=4)
    await esme.whenBound()
    sim.response_delay_s = 0.005
    probe = MOProbe(sim, inbox)
    texts = texts_of(48, "unbind")
    done = defer.ensureDeferred(burst(esme, texts))
    for n in (8, 20, 32):
        await wait_until(lambda n=n: len(sim.submits) >= n and esme.bound and sim.session)
        binds = sim.binds
        # 0, or the connection vanished before the unbind_resp was read: the ESME closes at
        # once with unread data in its socket (responses, MO), so Linux sends an RST that can
        # discard the unbind_resp at the SMSC (seen about 1 run in 10; see the xfail below).
        status = await sim.send_unbind().addErrback(lambda f: f.trap(ConnectionLost) and None)
        assert status in (0, None)
        await wait_until(lambda b=binds: sim.binds > b)  # and the ESME binds again
    stats = await done
    await probe.stop_and_check()
    assert sim.binds == 4 and stats.temporary > 0
    got = Counter(sim.texts_to(MSISDN))
    assert set(got) == set(texts)
    # At least once: the simulator accepts submits that cross its unbind, and the ESME answers
    # unbind_resp and stops reading at once, so their submit_sm_resp are never read and those
    # accepted submits are retried (see the xfail test below).
    assert sum(got.values()) - len(texts) <= stats.temporary
    await mo_still_served(sim, esme, inbox)


@pytest_twisted.ensureDeferred
async def test_inject_mo_on_a_dropped_link_fails_cleanly(sim, inbox, esme_to, no_logged_errors):
    esme = esme_to(sim.port, inbox)
    await esme.whenBound()
    never: defer.Deferred = defer.Deferred()
    inbox.on_deliver = lambda mo: never  # the store never confirms: no deliver_sm_resp yet
    esme.factory.on_deliver = inbox.on_deliver
    esme.protocol.on_deliver = inbox.on_deliver
    d = sim.inject_mo(MSISDN, "JF")
    await wait_until(lambda: sim.session is not None and sim.session.in_flight == 0)
    await sleep(0.02)
    sim.session.transport.abortConnection()
    failures = []
    d.addErrback(failures.append)  # the caller handles the failure
    await wait_until(lambda: failures, timeout=3)
    del d
    gc.collect()
    await sleep(0)
    unhandled = list(no_logged_errors)
    no_logged_errors.clear()
    assert unhandled == []


@pytest_twisted.ensureDeferred
async def test_a_submit_answered_right_after_an_smsc_unbind_is_not_lost(raw_hub, inbox, esme_to):
    hub, port = raw_hub
    esme = esme_to(port, inbox)
    await esme.whenBound()
    session = await hub.session()
    d = esme.submit(MSISDN, "only once")
    await wait_until(lambda: any(p.command == "submit_sm" for p in session.got))
    [submit] = [p for p in session.got if p.command == "submit_sm"]
    session.transport.write(encode_pdu("unbind", session.next_seq()))
    await sleep(0.01)  # the answer to the outstanding submit follows a moment later
    session.transport.write(encode_pdu("submit_sm_resp", submit.sequence, message_id="a1"))
    await sleep(0.05)
    session.transport.loseConnection()
    outcome = await d.addErrback(lambda f: f.value)
    assert not isinstance(outcome, Exception), outcome
    assert outcome.message_ids == ["a1"]
