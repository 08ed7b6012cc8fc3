"""The SMS channel's MO side: store each deliver_sm before acking it, then handle it.

A thin adapter over ``core.messaging``: ``on_deliver`` stores every deliver_sm (with the
others received since the last round of the channel's database lane, ``sms.lane``;
``core.messaging.storing``) and only then answers status 0; when the database fails the
answer is 0x58 (throttled) and the SMSC redelivers later. The same round then runs
``core.messaging.handling`` with this channel's renderer (templates fitted to
``smpp.max_parts``) and hands the replies it queued, already claimed, to the outbox sender.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any

from twisted.application import service
from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from core.log_limit import RepeatLimiter
from core.messages import Message
from core.messaging import handling
from core.messaging.handling import HandledBatch, HandlerSettings
from core.messaging.storing import housekeeping, store_mo_batch
from core.metrics import Metrics
from ops.dbservice import DatabaseService, Step, StepFailed
from sms.esme_types import MOMessage
from sms.failures import log_failure, scrubbed
from sms.lane import DatabaseLane, Waiting, step_failure
from sms.outbox import OutboxSender
from sms.pdu import ESME_RTHROTTLED
from sms.render import render_fitting

log = Logger()

FAILURE_REMINDER = 60  # while handling keeps failing, a log line every this many rounds

__all__ = ["HandledBatch", "HandlerSettings", "MOHandler", "handle_batch", "housekeeping",
           "store_mo_batch"]


def reply_text(message: Message, language: str, max_parts: int) -> str:
    """A reply's text, fitted to ``max_parts`` SMS parts."""
    return render_fitting(message.template, language, message.params, max_parts)


def handle_batch(uow, rules, settings: HandlerSettings, now: datetime, limit: int,
                 claim_until: datetime | None) -> HandledBatch:
    """``core.messaging.handling.handle_batch`` with this channel's replies."""
    return handling.handle_batch(uow, rules, settings, now, limit, claim_until,
                                 partial(reply_text, max_parts=settings.max_parts))


# --- the reactor side -------------------------------------------------------------------------


class MOHandler(service.Service):
    """``on_deliver`` for the ESME session (store, then ack) and the handling of stored MO,
    as two sources of the SMS channel's database lane (``sms.lane``): a round stores every
    MO received since the last one, answers their deliver_sm as that commits, and then
    handles what is waiting."""

    def __init__(self, db: DatabaseService, metrics: Metrics, settings: HandlerSettings, *,
                 clock: IReactorTime, now: Callable[[], datetime],
                 sender: OutboxSender | None = None, batch_size: int = 200, poll_s: float = 1.0,
                 max_store_batch: int = 1000, housekeeping_s: float = 3600.0,
                 lane: DatabaseLane | None = None) -> None:
        self.db = db
        self.metrics = metrics
        self.settings = settings
        self.clock = clock
        self.now = now
        self.sender = sender
        self.batch_size = batch_size
        self.poll_s = poll_s
        self.max_store_batch = max_store_batch
        self.housekeeping_s = housekeeping_s
        self.lane = lane or DatabaseLane(db, clock)
        self._store = _MOStore(self)
        self.lane.add(self._store, front=True)
        self.lane.add(self)
        self._housekeeping: task.LoopingCall | None = None
        self._poll: task.LoopingCall | None = None
        self._handling_wanted = False
        # The claim each round's replies carry, oldest first: a round may be taken before the
        # last one's results are in (sms.lane).
        self._claims_until: deque[datetime | None] = deque()
        self.handled = 0  # MO rows handled by this process
        self._out_of_plan_log = RepeatLimiter()
        self._failures = 0  # handling rounds failed in a row (the database unreachable)

    # -- the lane sources -----------------------------------------------------------------------
    # Two: storing (in front of every round, so a deliver_sm is answered once its MO is
    # committed, before the round's handling runs) and handling (this object).

    @property
    def pending(self) -> bool:
        return self._handling_wanted and self.running

    @property
    def backlog(self) -> int:
        return 0  # what it handles is what the store source took (counted there)

    @property
    def storing(self) -> bool:
        """MO received and not yet stored (or being stored)."""
        return self._store.mos.busy

    def take(self) -> list[Step]:
        self._handling_wanted = False
        claim_until = self.sender.claim_until() if self.sender is not None else None
        self._claims_until.append(claim_until)
        return [(handle_batch, (self.settings, self.now(), self.batch_size, claim_until))]

    def done(self, results: list[Any]) -> None:
        (handled,) = results
        claim_until = self._claims_until.popleft()
        if isinstance(handled, StepFailed):
            self._failed(step_failure(handled))
        else:
            self._handled(handled, claim_until)

    def failed(self, failure: Failure) -> None:
        self._claims_until.popleft()
        self._failed(failure)

    # -- storing -----------------------------------------------------------------------------

    def on_deliver(self, mo: MOMessage) -> defer.Deferred:
        d = self._store.mos.add(mo)
        d.addCallbacks(self._stored, self._store_failed)
        self.lane.kick()
        return d

    def _store_taken(self) -> None:
        """The store source took a batch: this round handles it (once the service runs)."""
        self._handling_wanted = True

    def _stored(self, new: bool) -> int:
        if not new:
            self.metrics.sms_mo.labels(outcome="duplicate").inc()
        return 0

    def _store_failed(self, failure: Failure) -> int:
        self.metrics.sms_mo.labels(outcome="store_error").inc()
        log_failure(log, "could not store an MO message; answering throttled so the SMSC "
                    "redelivers it", failure)
        return ESME_RTHROTTLED

    # -- handling ----------------------------------------------------------------------------

    def kick(self) -> None:
        """Handle received messages in the next round."""
        self._handling_wanted = True
        self.lane.kick()

    def _handled(self, batch: HandledBatch, claim_until: datetime | None = None) -> None:
        if self._failures:
            log.info("MO handling recovered after {n} failed rounds", n=self._failures)
            self._failures = 0
        self.handled += batch.count
        for problem in batch.problems:
            log.error("{problem}", problem=scrubbed(problem))
        for outcome, n in batch.outcomes.items():
            self.metrics.sms_mo.labels(outcome=outcome).inc(n)
        for sender in batch.out_of_plan:
            held_back = self._out_of_plan_log.allow(sender, self.clock.seconds())
            if held_back is not None:
                log.warn("SMS from {sender} stored, not answered: the number is outside the "
                         "numbering plan ({held_back} more from it since the last line)",
                         sender=sender, held_back=held_back)
        if batch.redemptions:
            self.metrics.redemptions.labels(channel="sms").inc(batch.redemptions)
        if self.sender is not None:
            if batch.claimed:
                self.sender.take(list(batch.claimed), claim_until)
            if batch.queued:
                self.sender.kick()
        if batch.count >= self.batch_size:
            self.kick()  # a full batch: more may be waiting

    def _failed(self, failure: Failure) -> None:
        # The database is unreachable: retried every poll (not at once: the next round
        # handles only when kicked), logged once and then every FAILURE_REMINDER rounds.
        self._failures += 1
        if self._failures == 1:
            log_failure(log, "MO handling failed; retrying every {s}s", failure, s=self.poll_s)
        elif self._failures % FAILURE_REMINDER == 0:
            log.error("MO handling still failing after {n} rounds: {error}", n=self._failures,
                      error=scrubbed(failure.getErrorMessage().splitlines()[0][:200]
                                     if failure.getErrorMessage() else "?"))

    def startService(self) -> None:
        super().startService()
        self._poll = task.LoopingCall(self.kick)
        self._poll.clock = self.clock
        self._poll.start(self.poll_s, now=True)
        self._housekeeping = task.LoopingCall(self._tidy)
        self._housekeeping.clock = self.clock
        self._housekeeping.start(self.housekeeping_s, now=False)

    def _tidy(self) -> defer.Deferred:
        return self.db.run(housekeeping, self.now()).addErrback(
            lambda f: log_failure(log, "SMS housekeeping failed", f))

    def stopService(self) -> defer.Deferred:
        super().stopService()
        for loop in (self._poll, self._housekeeping):
            if loop is not None and loop.running:
                loop.stop()
        return self.lane.when_idle()


class _MOStore:
    """The storing half of ``MOHandler`` as a lane source: every MO received since the last
    round, stored in one step; each deliver_sm is answered as that step commits (with
    whether its message was new: a repeat is stored too, and answered)."""

    def __init__(self, handler: MOHandler) -> None:
        self.handler = handler
        self.mos: Waiting[MOMessage] = Waiting(handler.max_store_batch)

    @property
    def pending(self) -> bool:
        return self.mos.pending

    @property
    def backlog(self) -> int:
        return len(self.mos)

    def take(self) -> list[Step]:
        mos = self.mos.take()
        self.handler._store_taken()
        return [(store_mo_batch, (mos, self.handler.now(),
                                  self.handler.settings.dedupe_window_s))]

    def done(self, results: list[Any]) -> None:
        (result,) = results
        self.mos.answer(step_failure(result) if isinstance(result, StepFailed) else result)

    def failed(self, failure: Failure) -> None:
        self.mos.answer(failure)
