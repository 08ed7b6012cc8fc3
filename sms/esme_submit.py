"""The submit_sm pipeline of the ESME session: queue, window, pacing, throttle handling.

A mixin of ESMEProtocol (sms/esme_protocol.py), kept apart for size; it relies on the
protocol's ``state``, ``config``, ``clock``, ``rate``, ``log``, ``_send_request`` and
``_in_flight``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from core.domain import mask_msisdn
from sms.encoding import Part, split_message
from sms.esme_types import NotBound, SMPPError, SubmitResult, TemporaryError, status_error
from sms.pdu import ESME_ROK, ESME_RSYSERR, ESME_RTHROTTLED, Pdu


@dataclass(eq=False)
class _Job:
    destination: str
    parts: list[Part]
    failed: SMPPError | None = None
    submit_params: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False)
class _QueuedPart:
    job: _Job
    index: int
    deferred: defer.Deferred


def _one_part_result(message_id: str, data_coding: int) -> SubmitResult:
    return SubmitResult([message_id], data_coding, 1)


class SubmitMixin:
    """submit() and the pump that sends queued parts within the window and the rate."""

    _queue: deque[_QueuedPart]
    _drain_waiters: list[defer.Deferred]
    trace: bool  # log a debug line per submit_sm

    # -- submit ------------------------------------------------------------------------------

    def _next_ref(self) -> int:
        self._ref = (self._ref + 1) & 0xFF
        return self._ref

    def submit(
        self,
        destination: str,
        text_or_parts: str | list[Part],
        *,
        max_parts: int = 3,
        registered_delivery: int = 1,
        source_addr: str | None = None,
        **extra: Any,
    ) -> defer.Deferred:
        """Queue every part; fires with SubmitResult when all parts were accepted, or fails
        with the first TemporaryError / PermanentError (later parts are then not sent)."""
        if self.state != "bound":
            return defer.fail(NotBound("SMPP session is not bound"))
        if isinstance(text_or_parts, str):
            try:
                parts = split_message(text_or_parts, max_parts, ref=self._next_ref())
            except ValueError as exc:
                return defer.fail(exc)
        else:
            parts = list(text_or_parts)
        if not parts:
            return defer.fail(ValueError("nothing to send"))
        cfg = self.config
        params = dict(
            source_addr=source_addr if source_addr is not None else cfg.source_addr,
            source_addr_ton=cfg.source_addr_ton, source_addr_npi=cfg.source_addr_npi,
            dest_addr_ton=getattr(cfg, "dest_addr_ton", 0),
            dest_addr_npi=getattr(cfg, "dest_addr_npi", 1),
            destination_addr=destination, registered_delivery=registered_delivery,
        )
        params.update(extra)
        job = _Job(destination, parts, submit_params=params)
        if len(parts) == 1:  # every MT the outbox sends (part by part): no gatherResults
            qp = _QueuedPart(job, 0, defer.Deferred())
            self._queue.append(qp)
            self._pump()
            return qp.deferred.addCallback(_one_part_result, parts[0].data_coding)
        ds = []
        for i in range(len(parts)):
            qp = _QueuedPart(job, i, defer.Deferred())
            self._queue.append(qp)
            ds.append(qp.deferred)
        self._pump()
        gathered = defer.gatherResults(ds, consumeErrors=True)
        gathered.addCallbacks(
            lambda ids: SubmitResult(list(ids), parts[0].data_coding, len(parts)),
            lambda f: f.value.subFailure if isinstance(f.value, defer.FirstError) else f,
        )
        return gathered

    def _fail_queue(self, exc: SMPPError) -> None:
        queue, self._queue = self._queue, deque()
        for qp in queue:
            qp.deferred.errback(exc)

    def _pump(self) -> None:
        if self._pumping:
            self._repump = True
            return
        self._pumping = True
        try:
            self._repump = True
            while self._repump:
                self._repump = False
                self._pump_once()
        finally:
            self._pumping = False

    def _pump_once(self) -> None:
        queue, rate, window = self._queue, self.rate, self.config.window
        while queue and self.state == "bound" and self._in_flight < window:
            qp = queue[0]
            if qp.job.failed is not None:
                queue.popleft()
                qp.deferred.errback(qp.job.failed)
                continue
            now = self.clock.seconds()
            wait = rate.delay(now)
            if wait > 0:
                if self._pump_call is None or not self._pump_call.active():
                    self._pump_call = self.clock.callLater(wait, self._pump)
                return
            rate.take(now)
            queue.popleft()
            self._send_part(qp)

    def _send_part(self, qp: _QueuedPart) -> None:
        part = qp.job.parts[qp.index]
        self._in_flight += 1
        if self.trace:
            self.log.debug("submit_sm to {dst} part {n}/{total}",
                           dst=mask_msisdn(qp.job.destination), n=qp.index + 1,
                           total=len(qp.job.parts))
        params = dict(qp.job.submit_params, esm_class=part.esm_class,
                      data_coding=part.data_coding, short_message=part.short_message)
        self._send_request("submit_sm", self._submit_done, qp, None, params)

    def _submit_done(self, result: Pdu | Failure, qp: _QueuedPart) -> None:
        self._in_flight -= 1
        if not self._in_flight:
            waiters, self._drain_waiters = self._drain_waiters, []
            for w in waiters:
                if not w.called:
                    w.callback(None)
        if isinstance(result, Failure):
            err = result.value if isinstance(result.value, SMPPError) else TemporaryError(
                result.getErrorMessage())
        elif result.status == ESME_ROK and result.command == "submit_sm_resp":
            self.rate.on_success()
            qp.deferred.callback(result.get("message_id", ""))
            self._pump()
            return
        else:  # an error status, or a generic_nack
            err = status_error(result.status or ESME_RSYSERR, "submit_sm")
            if isinstance(err, TemporaryError):
                self.rate.on_throttle(self.clock.seconds())
                self.log.warn("SMSC {what}; slowing to {rate:.2f}/s",
                              what="throttled" if result.status == ESME_RTHROTTLED
                              else "queue full", rate=self.rate.rate)
        qp.job.failed = qp.job.failed or err
        qp.deferred.errback(err)
        self._pump()
