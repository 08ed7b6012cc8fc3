"""One member's bad data must not stop the SMS channel for everyone else.

Over real TCP with the SMSC simulator: a member whose lots overflow a 64-bit sum (written
straight into the store, as a broken upstream system would), or whose handling fails for any
other reason, gets one "temporarily unavailable" reply after a few tries; everyone else is
answered within a second, and the log stays short.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.logger import formatEvent, globalLogPublisher

from core.store.messaging import SqlMessaging
from tests.core.helpers import corrupt_lots
from tests.sms.channel_helpers import NOW, Channel, converse
from tests.sms.conftest import sleep

ZHANG = "13800138000"
ALICE = "15800158000"
BOB = "18600186000"  # the member whose data is broken
UNAVAILABLE_EN = ("Loyalty: sorry, we cannot answer your request right now. "
                  "Please try again later.")
BUSY_EN = "Loyalty: sorry, the service is busy. Please try again later."


@pytest.fixture
def log_lines():
    lines: list[str] = []

    def observe(event: dict) -> None:
        text = formatEvent(event) or ""
        lines.extend(text.splitlines() or [""])

    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)


def break_balance_reads(monkeypatch, msisdn: str) -> None:
    """Any unexpected failure of one member's read (not only an overflow)."""
    original = SqlMessaging.balance_summaries

    def failing(self, msisdns, now):
        if msisdn in msisdns:
            raise RuntimeError("corrupt record")
        return original(self, msisdns, now)

    monkeypatch.setattr(SqlMessaging, "balance_summaries", failing)


async def timed_reply(ch: Channel, msisdn: str, text: str) -> tuple[str, float]:
    started = reactor.seconds()
    reply = await converse(ch, msisdn, text, timeout=3.0)
    return reply, reactor.seconds() - started


@pytest.mark.parametrize("breakage", ["overflow", "exception"])
@pytest_twisted.ensureDeferred
async def test_a_poison_message_does_not_delay_other_subscribers(
        channels, sim, demo, monkeypatch, log_lines, breakage):
    if breakage == "overflow":
        if not demo.is_sqlite:
            pytest.skip("PostgreSQL's SUM of integers does not overflow; see 'exception'")
        corrupt_lots(demo, BOB, NOW)
    else:
        break_balance_reads(monkeypatch, BOB)
    ch = await channels(mo_max_attempts=3, mo_retry_base_s=0.2).start()
    assert await sim.inject_mo(BOB, "JF") == 0
    # Arrives together with Bob's message, then a little later: both answered promptly.
    reply, took = await timed_reply(ch, ZHANG, "JF")
    assert reply.startswith("【积分查询】您的可用积分为9300分") and took < 1.0
    await sleep(0.3)
    reply, took = await timed_reply(ch, ALICE, "DJ")
    assert reply.startswith("Loyalty: your tier is") and took < 1.0
    await sim.wait_for(lambda: sim.texts_to(BOB), timeout=5.0)
    await sleep(1.5)
    states = [(r["msisdn"], r["state"], r["attempts"]) for r in ch.mo_rows()]
    if breakage == "overflow":
        # The store sees the impossible total and says so (AccountNeedsAttention): Bob is told
        # at once, like any refusal, and nothing is retried or set aside.
        assert sim.texts_to(BOB) == [BUSY_EN]
        assert states == [(BOB, "handled", 0), (ZHANG, "handled", 0), (ALICE, "handled", 0)]
    else:
        # An unexpected failure is tried 3 times with backoff, then set aside: one reply.
        assert sim.texts_to(BOB) == [UNAVAILABLE_EN]
        assert states == [(BOB, "set_aside", 3), (ZHANG, "handled", 0), (ALICE, "handled", 0)]
        assert ch.metric("loyalty_sms_mo_total", outcome="set_aside") == 1
        await ch.sms.refresh_metrics()
        assert ch.metric("loyalty_set_aside", queue="mo") == 1
    assert len(log_lines) < 120, "\n".join(log_lines)


def test_a_database_outage_is_logged_once_not_every_poll():
    """While the database is unreachable the loop retries every poll, but the log gets the
    first failure, a reminder now and then, and the recovery: not a traceback a second."""
    from sqlalchemy import exc as sa_exc
    from twisted.internet import task

    from core.metrics import Metrics
    from sms.handler import HandledBatch, HandlerSettings, MOHandler

    class DownDB:
        down = True

        def run_steps(self, steps, early=0, on_early=None, together=0):
            if self.down:
                return defer.fail(sa_exc.OperationalError("SELECT 1", (), Exception("gone")))
            return defer.succeed([HandledBatch() for _ in steps])

    clock, db, events = task.Clock(), DownDB(), []
    globalLogPublisher.addObserver(events.append)
    try:
        handler = MOHandler(db, Metrics(), HandlerSettings(), clock=clock,
                            now=lambda: NOW, poll_s=1.0)
        handler.startService()
        clock.pump([1.0] * 120)  # two minutes down
        db.down = False
        clock.advance(1.0)
        handler.stopService()
    finally:
        globalLogPublisher.removeObserver(events.append)
    lines = [line for e in events if e.get("log_namespace") == "sms.handler"
             for line in (formatEvent(e) or "").splitlines()]
    assert len(lines) < 80, "\n".join(lines)
    assert any("recovered" in line for line in lines)
