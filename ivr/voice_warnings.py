"""Voice expiry warnings (Twisted side): call members who chose voice, through AMI.

The expiry-warning job leaves ``pending`` voice rows in ``expiry_warnings``. This service polls
for due rows (``claim_voice_calls``: within ``ami.calling_hours``, never more than
``ami.max_concurrent_calls`` calls in flight from this process), asks the dialer to originate
each call with the channel variables ``LOYALTY_MSISDN`` and ``LOYALTY_WARNING_ID`` (read by the
``expiry-warning`` FastAGI flow once the call is answered), and records the outcome: answered ->
``called``; no answer, busy and the like -> tried again ``ami.retry_after_s`` later, at most
``ami.retries`` times, then ``failed``.

The AMI dialer runs its actions one at a time on its own thread (and waits there for each
call's OriginateResponse), so in practice calls are placed one after another; the limit still
bounds how many this process has outstanding.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from core.clock import SecondsClock, utc_now
from core.config import Config, parse_range
from core.domain import mask_msisdn
from core.jobs.expiry_warnings import claim_voice_calls, record_call_outcome
from core.jobs.records import VoiceCall
from core.jobs.schedule import within_hours
from core.metrics import Metrics
from ops.coalesce import Coalescer
from ops.dbservice import DatabaseService

POLL_S = 60.0
AMI_DOWN_PAUSE_S = 300.0


class Dialer(Protocol):
    """What places the calls (``ivr.ami.AMIDialer``): fires with a result that has
    ``answered`` and ``reason_text``."""

    def originate(self, msisdn: str,
                  variables: Mapping[str, str] | None = None) -> Deferred[Any]: ...


class VoiceWarningService(Service):
    name = "voice-warnings"
    log = Logger()

    def __init__(self, config: Config, db: DatabaseService, dialer: Dialer,
                 metrics: Metrics | None = None, *, reactor: IReactorTime,
                 poll_s: float = POLL_S, clock: SecondsClock | None = None) -> None:
        self.clock = clock or reactor  # what time it is (tests give a fixed one)
        self.config = config
        self.ami = config.ami
        self.db = db
        self.dialer = dialer
        self.metrics = metrics
        self.reactor = reactor
        self.poll_s = poll_s
        self.zone = config.programme.zone
        self.hours = parse_range(config.ami.calling_hours)
        self.in_flight: dict[int, Deferred] = {}
        self.outcomes: list[tuple[int, str, str]] = []  # (warning id, outcome, new state)
        self._loop: LoopingCall | None = None
        self._polls = Coalescer(lambda: Deferred.fromCoroutine(self._poll()))
        self._paused_until = 0.0
        self._stopping = False

    def now(self) -> datetime:
        return utc_now(self.clock)

    def startService(self) -> None:
        super().startService()
        self._stopping = False
        self._loop = LoopingCall(self.poll)
        self._loop.clock = self.reactor
        self._loop.start(self.poll_s, now=True)

    def stopService(self) -> Deferred:
        super().stopService()
        self._stopping = True
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        pending = list(self.in_flight.values())
        if self._polls.busy:
            pending.append(self._polls.when_idle())
        return DeferredList(pending, consumeErrors=True) if pending else succeed(None)

    # --- polling ----------------------------------------------------------------------------

    def poll(self) -> Deferred:
        """Claim due warnings for the free call slots and start their calls; polled while
        polling (a slot freed meanwhile), polls once more after. Never fails."""
        return self._polls.kick()

    async def _poll(self) -> int:
        if self._stopping or self.clock.seconds() < self._paused_until:
            return 0
        free = self.ami.max_concurrent_calls - len(self.in_flight)
        now = self.now()
        if free <= 0 or not within_hours(now, self.zone, self.hours):
            return 0
        try:
            calls = await self.db.run(claim_voice_calls, now, self.ami, free)
        except Exception:
            self.log.failure("voice warnings: could not claim due calls")
            return 0
        for call in calls:
            self._start(call)
        return len(calls)

    def _start(self, call: VoiceCall) -> None:
        fields = dict(warning_id=call.warning_id, msisdn=mask_msisdn(call.msisdn),
                      attempt=call.attempts)
        self.log.info("voice warning {warning_id}: calling {msisdn} (attempt {attempt})",
                      **fields)
        try:
            d = self.dialer.originate(call.msisdn, {"LOYALTY_MSISDN": call.msisdn,
                                                    "LOYALTY_WARNING_ID": str(call.warning_id)})
        except ValueError as bad:
            self.log.warn("voice warning {warning_id}: cannot dial {msisdn}: {error}",
                          error=str(bad), **fields)
            d = succeed("invalid")
        else:
            d.addCallbacks(lambda result: "answered" if result.answered else result.reason_text,
                           self._dial_error, errbackArgs=(fields,))
        d.addCallback(self._record, call, fields)
        d.addErrback(lambda f: self.log.failure("voice warning {warning_id}: bookkeeping "
                                                "failed", f, **fields))
        self.in_flight[call.warning_id] = d

        def finished(_: Any) -> None:
            self.in_flight.pop(call.warning_id, None)
            if not self._stopping:
                self.poll()  # a slot is free: take the next due call, if any

        d.addBoth(finished)

    def _dial_error(self, failure, fields: dict[str, Any]) -> str:
        error = failure.value
        placed = getattr(error, "call_may_be_placed", True)
        self.log.warn("voice warning {warning_id}: AMI error: {error} (call may have been placed: "
                      "{placed})", error=str(error), placed=placed, **fields)
        if not placed:
            # AMI unreachable: nobody was called. Try again after a pause, without using up
            # one of the member's tries.
            self._paused_until = self.clock.seconds() + AMI_DOWN_PAUSE_S
            return "not-placed"
        return "unknown"

    def _record(self, outcome: str, call: VoiceCall, fields: dict[str, Any]) -> Deferred:
        d = self.db.run(record_call_outcome, call.warning_id, outcome, self.now(), self.ami)

        def recorded(state: str) -> str:
            self.outcomes.append((call.warning_id, outcome, state))
            self.log.info("voice warning {warning_id}: {outcome}, now {state}", outcome=outcome,
                          state=state, **fields)
            return state

        return d.addCallback(recorded)
