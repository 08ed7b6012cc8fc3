"""SMPP 3.4 ESME session for the SMS channel: the reconnecting service and the public API.

Public names: ESMEService, ESMEProtocol, ESMEFactory, SubmitResult, MOMessage,
DeliveryReceipt, TemporaryError, PermanentError, NotBound, BindFailed, SMPPError, mask_msisdn.
See sms/esme_protocol.py for the callback contracts of ``on_deliver`` / ``on_receipt``.

ESMEService is not built on ClientService: its ``prepareConnection`` hook (the natural
place to wait for the bind) does not close a rejected connection, and a connection lost while
still binding hits a state machine transition it does not define. This small service counts a
failed bind as a failed attempt, so a refusing SMSC gets exponential backoff, not a reconnect
storm.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from core.domain import mask_msisdn
from sms.encoding import Part, Reassembler
from sms.esme_protocol import ESMEFactory, ESMEProtocol, OnDeliver, OnReceipt
from sms.esme_types import (
    BindFailed,
    DeliveryReceipt,
    MOMessage,
    NotBound,
    PermanentError,
    SMPPError,
    SubmitResult,
    TemporaryError,
)
from sms.session_settings import SessionSettings

__all__ = [
    "BindFailed",
    "DeliveryReceipt",
    "ESMEFactory",
    "ESMEProtocol",
    "ESMEService",
    "MOMessage",
    "NotBound",
    "PermanentError",
    "SMPPError",
    "SubmitResult",
    "TemporaryError",
    "mask_msisdn",
]


class ESMEService(service.Service):
    """Keeps one bound transceiver session to the SMSC.

    Reconnects after ``reconnect_min_s * 2**(n-1)`` seconds (capped at ``reconnect_max_s``,
    plus up to 10 % jitter) after the n-th failed attempt in a row; an attempt succeeds when
    the bind does. ``stopService`` unbinds cleanly.
    """

    log = Logger()

    def __init__(
        self,
        config: SessionSettings,
        endpoint: IStreamClientEndpoint,
        on_deliver: OnDeliver,
        on_receipt: OnReceipt,
        *,
        clock: IReactorTime,
        reassembler: Reassembler | None = None,
    ):
        self.config = config
        self.endpoint = endpoint
        self.clock = clock
        self.factory = ESMEFactory(config, on_deliver, on_receipt, clock=clock,
                                   reassembler=reassembler)
        self.failed_attempts = 0
        self.binds = 0  # successful binds so far (handy for monitoring and tests)
        self._proto: ESMEProtocol | None = None  # the connected protocol, bound or not
        self._connecting: defer.Deferred | None = None
        self._retry: IDelayedCall | None = None
        self._waiters: list[defer.Deferred] = []

    # -- public ------------------------------------------------------------------------------

    @property
    def bound(self) -> bool:
        return self._proto is not None and self._proto.is_bound

    @property
    def protocol(self) -> ESMEProtocol | None:
        return self._proto if self.bound else None

    def whenBound(self) -> defer.Deferred:
        """Fires with the bound ESMEProtocol (now, or after the next successful bind). Fails
        with CancelledError when the service stops first."""
        if self.bound:
            return defer.succeed(self._proto)
        d: defer.Deferred = defer.Deferred()
        self._waiters.append(d)
        return d

    def submit(self, destination: str, text_or_parts: str | list[Part],
               **kwargs: Any) -> defer.Deferred:
        """ESMEProtocol.submit on the bound session; TemporaryError (NotBound) when unbound."""
        if not self.bound:
            return defer.fail(NotBound("SMPP session is not bound"))
        return self._proto.submit(destination, text_or_parts, **kwargs)

    def startService(self) -> None:
        super().startService()
        self._connect()

    def stopService(self) -> defer.Deferred:
        super().stopService()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        if self._connecting is not None:
            self._connecting.cancel()
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            w.errback(defer.CancelledError("ESME service stopped"))
        if self._proto is not None:
            return self._proto.unbind()
        return defer.succeed(None)

    # -- internals ---------------------------------------------------------------------------

    def _connect(self) -> None:
        self._retry = None
        if not self.running:
            return
        self._connecting = self.endpoint.connect(self.factory)
        self._connecting.addCallbacks(self._connected, self._attempt_failed)

    def _connected(self, proto: ESMEProtocol) -> None:
        self._connecting = None
        self._proto = proto
        proto.when_closed().addCallback(lambda _: self._lost(proto))
        proto.when_bound().addCallbacks(self._bound, lambda f: None)

    def _bound(self, proto: ESMEProtocol) -> None:
        self.failed_attempts = 0
        self.binds += 1
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            w.callback(proto)

    def _lost(self, proto: ESMEProtocol) -> None:
        if self._proto is proto:
            self._proto = None
        if proto.was_bound:
            self.failed_attempts = 0
            self._schedule(first=True)
        else:
            self._attempt_failed(None)

    def _attempt_failed(self, failure: Failure | None) -> None:
        self._connecting = None
        if failure is not None and self.running:
            self.log.warn("SMSC connection failed: {why}", why=failure.getErrorMessage())
        self._schedule()

    def _schedule(self, first: bool = False) -> None:
        if not self.running:
            return
        if not first:
            self.failed_attempts += 1
        cfg = self.config
        n = max(self.failed_attempts, 1)
        delay = min(cfg.reconnect_max_s, cfg.reconnect_min_s * 2 ** min(n - 1, 30))
        delay += random.uniform(0, delay * 0.1)
        self.log.info("reconnecting to the SMSC in {delay:.2f}s (attempt {n})",
                      delay=delay, n=self.failed_attempts + 1)
        self._retry = self.clock.callLater(delay, self._connect)
