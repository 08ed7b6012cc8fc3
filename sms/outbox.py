"""The MT sender: durable outbox rows -> submit_sm, with claims, retries and message ids.

Every MT is an ``outbox`` row (replies to MO, the IVR's SMS copies, the jobs' notices).
A row is *claimed* (state ``sending``, ``claimed_until`` = now + lease, attempts + 1) before it
is submitted: with PostgreSQL ``FOR UPDATE SKIP LOCKED`` lets several server processes share
the outbox; SQLite serialises writers with ``BEGIN IMMEDIATE``. The claim is extended while the
row waits in this process; a claim whose process died lapses and the row is claimed again.
The MO handler inserts its replies already claimed and hands them straight to the sender.

Each part of a message is submitted on its own (same concatenation reference, ``id & 0xFF``,
and the same split every time), and the SMSC's message id of each accepted part is recorded;
a retry sends only the parts not accepted yet, so a link lost in the middle of a message does
not make the handset show parts twice. Outcomes, recorded in batches:

* every part accepted -> ``submitted`` (message ids recorded per part with their normalised
  keys in ``outbox_ids``; a receipt that overtook its submit_sm_resp is matched then);
* a ``TemporaryError`` (throttled, queue full, link lost, timeout, unbound) -> back to
  ``queued`` with ``not_before`` = now + backoff;
* a ``PermanentError`` -> ``failed`` with the error (and a render failure, at claim time);
* a ``TemporaryError`` on the ``max_attempts``-th attempt -> ``set_aside`` (the parts accepted
  so far kept): out of the queue until ``loyalty queues retry mt:ID`` puts it back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from twisted.application import service
from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from core.config import JobsConfig
from core.domain import mask_msisdn
from core.messaging.outbox import (
    Outcome,
    claim_batch,
    extend_claims,
    outbox_depth,
    record_events,
    release_claims,
)
from core.messaging.receipts import ReceiptItem
from core.messaging.records import OutboxRow
from core.metrics import Metrics
from ops.coalesce import Coalescer
from ops.dbservice import DatabaseService, Step, StepFailed
from sms.encoding import MessageTooLong
from sms.esme_types import PermanentError, SMPPError, SubmitResult, TemporaryError
from sms.failures import log_failure
from sms.lane import DatabaseLane, Waiting, step_failure
from sms.pdu import ESME_RMSGQFUL, ESME_RTHROTTLED, normalise_message_id
from sms.render import parts_for, row_text
from sms.session import ESMEService

log = Logger()

class MTEvents:
    """Everything that happens to MT messages, recorded together: submit outcomes (from the
    sender) and delivery receipts (from the receipt matcher), a source of the SMS channel's
    database lane (``sms.lane``): each round records everything added since the last one in
    one transaction. ``add(item)`` fires once the item is recorded."""

    def __init__(self, db: DatabaseService, metrics: Metrics, *, clock: IReactorTime,
                 now: Callable[[], datetime], max_items: int = 2000,
                 lane: DatabaseLane | None = None) -> None:
        self.metrics = metrics
        self.now = now
        self.lane = lane or DatabaseLane(db, clock)
        self.lane.add(self, front=True)  # the SMSC waits for receipts to be answered
        self._events: Waiting[Outcome | ReceiptItem] = Waiting(max_items)

    def add(self, item: Outcome | ReceiptItem) -> defer.Deferred:
        d = self._events.add(item)
        self.lane.kick()
        return d

    @property
    def busy(self) -> bool:
        return self._events.busy

    def when_idle(self) -> defer.Deferred:
        return self.lane.when_idle()

    # -- the lane source -----------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        return self._events.pending

    @property
    def backlog(self) -> int:
        return len(self._events)

    def take(self) -> list[Step]:
        items = self._events.take()
        outcomes = [i for i in items if isinstance(i, Outcome)]
        receipts = [i for i in items if isinstance(i, ReceiptItem)]
        return [(record_events, (outcomes, receipts, self.now(), normalise_message_id))]

    def done(self, results: list[Any]) -> None:
        (counts,) = results
        if isinstance(counts, StepFailed):
            self.failed(step_failure(counts))
            return
        for state, n in counts.items():
            self.metrics.receipts.labels(state=state).inc(n)
        self._events.answer([None] * len(self._events.taken))

    def failed(self, failure: Failure) -> None:
        self._events.answer(failure)


# --- the sender (reactor) ---------------------------------------------------------------------


@dataclass(eq=False)
class _InFlight:
    row: OutboxRow
    ids: list[str | None]
    waiting: int = 0
    accepted: list[tuple[int, str]] = field(default_factory=list)
    temporary: SMPPError | Exception | None = None
    permanent: SMPPError | Exception | None = None
    recording: bool = False


@dataclass(frozen=True)
class SenderSettings:
    max_parts: int = 3
    max_in_flight: int = 200  # rows held by this process (claimed, not yet recorded)
    lease_s: float = 30.0  # claim length; extended every lease_s / 3 while held
    poll_s: float = 0.5  # look for due rows (other processes' rows, retries) this often
    retry_base_s: float = 0.5  # backoff after a temporary error: base * 2**(attempts-1)
    retry_max_s: float = 60.0
    max_attempts: int = 12  # an MT still not accepted after this many tries is set aside
    # False: send only the rows the MO handler hands over, never claim queued ones (a
    # simulation must not send messages waiting for real subscribers).
    claim_queue: bool = True
    quiet: JobsConfig | None = None  # [jobs] quiet_start/quiet_end hold notices at night


class OutboxSender(service.Service):
    """Claims due outbox rows and submits them through the ESME session."""

    def __init__(self, esme: ESMEService, db: DatabaseService, metrics: Metrics,
                 settings: SenderSettings, *, clock: IReactorTime, now: Callable[[], datetime],
                 events: MTEvents | None = None) -> None:
        self.esme = esme
        self.db = db
        self.metrics = metrics
        self.settings = settings
        self.clock = clock
        self.now = now
        self.rows: dict[int, _InFlight] = {}
        self.results = events or MTEvents(db, metrics, clock=clock, now=now)
        self._claims = Coalescer(self._claim_round, clock)
        self._backlog = False  # due rows may be waiting for room here
        self._poll: task.LoopingCall | None = None
        self._extend: task.LoopingCall | None = None
        self.submitted = 0  # rows fully accepted by this process (tests and the bench)

    # -- public ------------------------------------------------------------------------------

    @property
    def accepting(self) -> bool:
        """True when rows handed over now would be submitted at once."""
        return (self.running and self.esme.bound
                and len(self.rows) < self.settings.max_in_flight)

    def claim_until(self) -> datetime | None:
        """The lease for rows the MO handler inserts already claimed, or None when it should
        queue them for any process instead (not bound, or enough in flight here)."""
        if not self.accepting:
            return None
        return self.now() + timedelta(seconds=self.settings.lease_s)

    def take(self, rows: list[OutboxRow], claimed_until: datetime | None = None) -> None:
        """Submit rows this process has claimed (until ``claimed_until``).

        Rows whose claim is about to lapse when they get here (a slow batch, a busy database
        pool) are left alone: another claim, this process's or another's, may have taken and
        even sent them meanwhile, and sending them here too would send them twice. They are
        claimed again, the ordinary way, once the claim has lapsed."""
        if claimed_until is not None and self.now() >= claimed_until - timedelta(
                seconds=self.settings.lease_s / 3):
            log.warn("{n} claimed outbox rows came back too late to send safely; they are "
                     "claimed again when their claim lapses", n=len(rows))
            return
        for row in rows:
            if row.id not in self.rows:
                self._start(row)

    def kick(self) -> None:
        """Claim due rows now (if bound and there is room)."""
        if not self.running or not self.esme.bound or not self.settings.claim_queue:
            return
        self._claims.kick()

    def _claim_round(self) -> defer.Deferred[None] | None:
        if not self.running or not self.esme.bound or not self.settings.claim_queue:
            return None
        room = self.settings.max_in_flight - len(self.rows)
        if room < max(1, self.settings.max_in_flight // 4):
            self._backlog = True
            return None
        now = self.now()
        until = now + timedelta(seconds=self.settings.lease_s)
        d = self.db.run(claim_batch, now, until, room,
                        partial(row_text, max_parts=self.settings.max_parts), self.settings.quiet)
        d.addCallbacks(self._claimed, self._claim_failed, callbackArgs=(room, until))
        return d

    def refresh_depth(self) -> defer.Deferred:
        """Set the outbox_depth gauge (and smpp_bound) from the database; fires with it."""
        self.metrics.smpp_bound.set(1 if self.esme.bound else 0)
        d = self.db.run(outbox_depth, write=False)
        d.addCallback(lambda n: (self.metrics.outbox_depth.set(n), n)[1])
        return d

    # -- service -----------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._poll = task.LoopingCall(self.kick)
        self._poll.clock = self.clock
        self._poll.start(self.settings.poll_s, now=True)
        self._extend = task.LoopingCall(self._extend_claims)
        self._extend.clock = self.clock
        self._extend.start(self.settings.lease_s / 3, now=False)

    def stopService(self) -> defer.Deferred:
        """Stop claiming; call after the ESME session stopped (its queue then failed back
        here). Records what is pending and releases claims still held."""
        super().stopService()
        for loop in (self._poll, self._extend):
            if loop is not None and loop.running:
                loop.stop()
        return defer.ensureDeferred(self._drain())

    async def _drain(self) -> None:
        await self.results.when_idle()
        left = [i for i, f in self.rows.items() if not f.recording]
        if left:
            try:
                await self.db.run(release_claims,
                                  [(i, self.rows[i].row.attempts) for i in left])
            except Exception:  # noqa: BLE001 - the claims lapse by themselves
                log_failure(log, "could not release outbox claims; they lapse in {s}s",
                            Failure(), s=self.settings.lease_s)
            for i in left:
                self.rows.pop(i, None)

    # -- claiming ----------------------------------------------------------------------------

    def _claimed(self, claimed: tuple[list[OutboxRow], list[tuple[int, str]]],
                 room: int, until: datetime) -> None:
        rows, failed = claimed
        for row_id, error in failed:
            self.metrics.sms_mt.labels(outcome="failed").inc()
            log.error("outbox row {id} failed: {error}", id=row_id, error=error)
        self.take(rows, until)
        self._backlog = len(rows) + len(failed) >= room
        if self._backlog:
            self.kick()  # run again on the next turn: more rows are due

    def _claim_failed(self, failure: Failure) -> Failure:
        log_failure(log, "could not claim outbox rows", failure)
        return failure  # no second round at once: the poll retries

    def _extend_claims(self) -> defer.Deferred | None:
        # Rows whose outcome waits to be recorded too: until it is, the row is still
        # 'sending', and a claim that lapsed meanwhile would let the next claim round take it
        # again (here, where it is skipped while held, and then sent again once the outcome,
        # now fenced off as stale, is dropped).
        claims = [(i, f.row.attempts) for i, f in self.rows.items()]
        if not claims:
            return None
        until = self.now() + timedelta(seconds=self.settings.lease_s)
        return self.db.run(extend_claims, claims, until).addCallbacks(
            self._lost, lambda f: log_failure(log, "could not extend outbox claims", f))

    def _lost(self, ids: set[int]) -> None:
        if ids:
            # Stalled past the lease: another process has them now; what this one records
            # about them is ignored (core.messaging.outbox), but a part already handed to the
            # session may still go out twice.
            log.warn("{n} outbox rows held here were claimed by another process after this "
                     "one's claim lapsed (smpp.outbox_lease_s {s}s)", n=len(ids),
                     s=self.settings.lease_s)

    # -- submitting --------------------------------------------------------------------------

    def _start(self, row: OutboxRow) -> None:
        flight = _InFlight(row, [])
        self.rows[row.id] = flight
        try:
            parts = parts_for(row.body or "", self.settings.max_parts, ref=row.id & 0xFF)
        except (MessageTooLong, ValueError) as exc:
            flight.permanent = exc
            self._finish(flight)
            return
        ids = list(row.message_ids)
        flight.ids = ids if len(ids) == len(parts) else [None] * len(parts)
        todo = [i for i, mid in enumerate(flight.ids) if mid is None]
        if not todo:
            self._finish(flight)
            return
        flight.waiting = len(todo)
        for i in todo:
            d = self.esme.submit(row.msisdn, [parts[i]])
            d.addBoth(self._part_done, flight, i)

    def _part_done(self, result: Any, flight: _InFlight, part: int) -> None:
        flight.waiting -= 1
        if isinstance(result, SubmitResult):
            mid = result.message_ids[0] if result.message_ids else ""
            flight.ids[part] = mid
            flight.accepted.append((part, mid))
        elif isinstance(result, Failure) and isinstance(result.value, PermanentError):
            flight.permanent = flight.permanent or result.value
        elif isinstance(result, Failure):
            exc = result.value
            if isinstance(exc, TemporaryError) and exc.status in (ESME_RTHROTTLED,
                                                                  ESME_RMSGQFUL):
                self.metrics.smpp_throttled.inc()
            elif not isinstance(exc, SMPPError):
                log_failure(log, "unexpected submit failure", result)
            flight.temporary = flight.temporary or exc
        if flight.waiting <= 0:
            self._finish(flight)

    def _finish(self, flight: _InFlight) -> None:
        row = flight.row
        ids = tuple(flight.ids)
        if flight.permanent is not None:
            error = _describe(flight.permanent)
            outcome = Outcome(row.id, ids, tuple(flight.accepted), "failed", error,
                              attempt=row.attempts)
            self.metrics.sms_mt.labels(outcome="failed").inc()
            log.warn("MT {id} to {dst} failed: {error}", id=row.id,
                     dst=mask_msisdn(row.msisdn), error=error)
        elif all(mid is not None for mid in ids):
            outcome = Outcome(row.id, ids, tuple(flight.accepted), "submitted",
                              attempt=row.attempts)
            self.metrics.sms_mt.labels(outcome="submitted").inc()
            self.submitted += 1
        elif row.attempts >= self.settings.max_attempts:
            # Refused for a while every time: out of the queue until ops retry it.
            error = _describe(flight.temporary)
            outcome = Outcome(row.id, ids, tuple(flight.accepted), "set_aside", error,
                              attempt=row.attempts)
            self.metrics.sms_mt.labels(outcome="set_aside").inc()
            log.warn("MT {id} to {dst} set aside after {n} attempts: {error}", id=row.id,
                     dst=mask_msisdn(row.msisdn), n=row.attempts, error=error)
        else:
            s = self.settings
            delay = min(s.retry_max_s, s.retry_base_s * 2 ** max(0, row.attempts - 1))
            outcome = Outcome(row.id, ids, tuple(flight.accepted), "retry",
                              _describe(flight.temporary), self.now() + timedelta(seconds=delay),
                              attempt=row.attempts)
            self.metrics.sms_mt.labels(outcome="retry").inc()
        flight.recording = True
        self.results.add(outcome).addCallbacks(
            self._recorded, self._record_failed, callbackArgs=(row.id,), errbackArgs=(row.id,))

    def _recorded(self, _: Any, row_id: int) -> None:
        self.rows.pop(row_id, None)
        # Claim more only when rows were left waiting for room (else the poll finds them).
        if (self._backlog and not self._claims.busy
                and len(self.rows) <= self.settings.max_in_flight * 3 // 4):
            self.kick()

    def _record_failed(self, failure: Failure, row_id: int) -> None:
        # The row keeps its claim (state sending) and is sent again once the claim lapses:
        # at-least-once, never lost.
        log_failure(log, "could not record an MT outcome; the row is retried after its claim "
                    "lapses", failure)
        self.rows.pop(row_id, None)


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    status = getattr(exc, "status", None)
    text = str(exc) or type(exc).__name__
    return text if status is None or f"{status:08x}" in text else f"{text} (0x{status:08x})"
