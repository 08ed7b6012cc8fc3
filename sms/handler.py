"""The SMS channel's MO side: store each deliver_sm before acking it, then handle it.

A thin adapter over ``core.messaging``: ``on_deliver`` stores every deliver_sm (group commit
with the others of the same moment, ``core.messaging.storing``) and only then answers status
0; when the database fails the answer is 0x58 (throttled) and the SMSC redelivers later. The
handling loop runs ``core.messaging.handling`` on the database thread, with this channel's
renderer (templates fitted to ``smpp.max_parts``), and hands the replies it queued, already
claimed, to the outbox sender.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import partial

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
from ops.coalesce import Coalescer
from ops.dbservice import DatabaseService
from sms.batching import GroupCommit, log_failure, scrubbed
from sms.esme_types import MOMessage
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
    """``on_deliver`` for the ESME session (store, then ack) and the handling loop."""

    def __init__(self, db: DatabaseService, metrics: Metrics, settings: HandlerSettings, *,
                 clock: IReactorTime, now: Callable[[], datetime],
                 sender: OutboxSender | None = None, batch_size: int = 200, poll_s: float = 1.0,
                 max_store_batch: int = 1000, housekeeping_s: float = 3600.0) -> None:
        self.db = db
        self.metrics = metrics
        self.settings = settings
        self.clock = clock
        self.now = now
        self.sender = sender
        self.batch_size = batch_size
        self.poll_s = poll_s
        self.housekeeping_s = housekeeping_s
        self._housekeeping: task.LoopingCall | None = None
        self.store = GroupCommit(self._flush_store, clock, max_items=max_store_batch)
        self._rounds = Coalescer(self._handle_round)
        self._poll: task.LoopingCall | None = None
        self.handled = 0  # MO rows handled by this process
        self._out_of_plan_log = RepeatLimiter()
        self._failures = 0  # handling rounds failed in a row (the database unreachable)

    # -- storing -----------------------------------------------------------------------------

    def on_deliver(self, mo: MOMessage) -> defer.Deferred:
        d = self.store.add(mo)
        d.addCallbacks(self._stored, self._store_failed)
        return d

    def _flush_store(self, mos: list[MOMessage]) -> defer.Deferred:
        d = self.db.run(store_mo_batch, mos, self.now(), self.settings.dedupe_window_s)
        d.addCallback(self._after_store)
        return d

    def _after_store(self, new: list[bool]) -> list[bool]:
        self.kick()  # a repeat (not new) is stored too, and answered
        return new

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
        """Handle received messages now (again after the current batch, if one runs)."""
        self._rounds.kick()

    def _handle_round(self) -> defer.Deferred[None] | None:
        if not self.running:
            return None
        claim_until = self.sender.claim_until() if self.sender is not None else None
        d = self.db.run(handle_batch, self.settings, self.now(), self.batch_size, claim_until)
        d.addCallbacks(self._handled, self._failed, callbackArgs=(claim_until,))
        return d

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

    def _failed(self, failure: Failure) -> Failure:
        # The database is unreachable: retried every poll, logged once and then every
        # FAILURE_REMINDER rounds, not a traceback a second.
        self._failures += 1
        if self._failures == 1:
            log_failure(log, "MO handling failed; retrying every {s}s", failure, s=self.poll_s)
        elif self._failures % FAILURE_REMINDER == 0:
            log.error("MO handling still failing after {n} rounds: {error}", n=self._failures,
                      error=scrubbed(failure.getErrorMessage().splitlines()[0][:200]
                                     if failure.getErrorMessage() else "?"))
        return failure  # no second round at once: the poll retries

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
        return defer.gatherResults([self.store.when_idle(), self._rounds.when_idle()])
