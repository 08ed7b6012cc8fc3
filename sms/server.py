"""The SMS channel as one service: ESME session + MO handler + receipt matcher + outbox sender.

    top.sms = sms_service(config, top.db, top.metrics, reactor)
    top.sms.setServiceParent(top)
    checks["smpp"] = lambda: top.sms.bound          # health: True while bound to the SMSC

``sms_service`` returns an :class:`SmsService`. ``.bound`` is True while the
SMPP session is bound; ``.refresh_metrics()`` updates the outbox_depth and smpp_bound gauges
(it also runs every ``metrics_s`` seconds by itself). On PostgreSQL it also keeps the
planner's statistics of its queue tables current (``refresh_statistics``, every
``statistics_s`` seconds; see ``QUEUE_TABLES``).

Stopping order matters and is done here: the MO loop stops, the session unbinds (waiting for
outstanding submits; what was still queued in it fails back to the sender), then the sender
records every outcome and releases the claims it still holds. Those last writes need the
database pool: stop this service before the database service. If they cannot be made
(``stop_timeout_s``), nothing is lost: the rows keep their claim until it lapses (the sender's
``lease_s``, 30 s) and any process sends them then.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from twisted.application import service
from twisted.internet import defer, endpoints, task
from twisted.internet.interfaces import (
    IProtocol,
    IProtocolFactory,
    IReactorTCP,
    IStreamClientEndpoint,
)
from twisted.logger import Logger
from zope.interface import implementer

from core.clock import utc_now_from
from core.config import Config
from core.metrics import Metrics
from core.queues import set_aside_counts
from core.rules import ProgrammeRules
from ops.dbservice import DatabaseService
from sms.failures import log_failure
from sms.handler import HandlerSettings, MOHandler
from sms.lane import DatabaseLane
from sms.outbox import MTEvents, OutboxSender, SenderSettings
from sms.receipts import ReceiptMatcher
from sms.session import ESMEService
from sms.session_settings import SessionSettings

log = Logger()

# The tables the SMS channel churns through, hundreds of rows a second. PostgreSQL plans their
# lookups from statistics that only ANALYZE refreshes: with autovacuum off, or behind the
# churn, the planner took outbox_ids for a tiny table and read all of it for every batch of
# receipts, so PostgreSQL's CPU grew with the table (the soak's MO p99 reached 15 s after ten
# minutes). The channel checks them every ``statistics_s`` and analyzes those changed by more
# than autovacuum's own threshold, so a young table that doubles in seconds is seen as it grows.
QUEUE_TABLES = ("outbox", "outbox_ids", "sms_receipts", "mo_messages", "sms_rate")


def refresh_queue_statistics(uow: Any, rules: ProgrammeRules) -> bool:
    """ANALYZE the SMS queue tables whose statistics are stale (PostgreSQL; nothing on
    SQLite); returns whether autovacuum is on (database thread)."""
    stale = uow.stale_statistics(*QUEUE_TABLES)
    if stale:
        uow.refresh_statistics(*stale)
    return uow.autovacuum_on()


@implementer(IStreamClientEndpoint)
class NoDelayEndpoint:
    """An endpoint whose connections have Nagle's algorithm off (TCP_NODELAY). SMPP is
    request/response with small PDUs: with Nagle, a submit_sm written while an earlier small
    write is unacknowledged waits for the peer's delayed ACK (tens of milliseconds)."""

    def __init__(self, endpoint: IStreamClientEndpoint) -> None:
        self.endpoint = endpoint

    def connect(self, factory: IProtocolFactory) -> defer.Deferred:
        def no_delay(proto: IProtocol) -> IProtocol:
            transport = getattr(proto, "transport", None)
            if transport is not None and hasattr(transport, "setTcpNoDelay"):
                transport.setTcpNoDelay(True)
            return proto

        return self.endpoint.connect(factory).addCallback(no_delay)


class SmsService(service.Service):
    """Starts and stops its parts in the order they need (see the module doc)."""

    def __init__(self, config: Config, db: DatabaseService, metrics: Metrics, *,
                 reactor: IReactorTCP,
                 now: Callable[[], datetime] | None = None,
                 sender_settings: SenderSettings | None = None,
                 handler_settings: HandlerSettings | None = None,
                 metrics_s: float = 15.0, receipt_hold_s: float = 600.0,
                 stop_timeout_s: float = 10.0, statistics_s: float = 10.0) -> None:
        self.reactor = reactor
        self.db = db
        self.metrics = metrics
        self.metrics_s = metrics_s
        self.statistics_s = statistics_s
        self._warned_autovacuum = False
        self.stop_timeout_s = stop_timeout_s
        now = now or utc_now_from(reactor)
        smpp = config.smpp
        self.enabled = smpp.enabled
        cfg = SessionSettings.from_config(smpp, trace=config.logging.level == "debug")
        self.handler_settings = handler_settings or HandlerSettings(
            rate_limit=smpp.mo_rate_limit, dedupe_window_s=smpp.mo_dedupe_window_s,
            max_parts=smpp.max_parts,
            default_language=config.programme.default_language,
            max_attempts=smpp.mo_max_attempts, retry_base_s=smpp.mo_retry_base_s)
        self.sender_settings = sender_settings or SenderSettings(
            max_parts=smpp.max_parts, quiet=config.jobs, lease_s=smpp.outbox_lease_s,
            max_attempts=smpp.outbox_max_attempts,
            max_in_flight=int(min(5000, max(4 * smpp.window, 2 * smpp.max_submit_rate))))
        # One lane for the MO side and the MT events: one trip to the database per round.
        self.lane = DatabaseLane(db, reactor, round_wait_s=smpp.round_wait_ms / 1000,
                                 round_items=smpp.round_items)
        self.handler = MOHandler(db, metrics, self.handler_settings, clock=reactor, now=now,
                                 lane=self.lane)
        self.events = MTEvents(db, metrics, clock=reactor, now=now, lane=self.lane)
        self.receipts = ReceiptMatcher(db, metrics, clock=reactor, now=now,
                                       hold_s=receipt_hold_s, events=self.events)
        endpoint = NoDelayEndpoint(
            endpoints.HostnameEndpoint(reactor, smpp.host, smpp.port, timeout=10))
        self.esme = ESMEService(cfg, endpoint, self.handler.on_deliver,
                                self.receipts.on_receipt, clock=reactor)
        self.sender = OutboxSender(self.esme, db, metrics, self.sender_settings,
                                   clock=reactor, now=now, events=self.events)
        self.handler.sender = self.sender
        self._metrics_loop: task.LoopingCall | None = None
        self._statistics_loop: task.LoopingCall | None = None

    @property
    def bound(self) -> bool:
        """True while bound to the SMSC (for the health check)."""
        return self.esme.bound

    def refresh_metrics(self) -> defer.Deferred:
        """Update outbox_depth, smpp_bound and set_aside; fires with the outbox depth."""
        aside = self.db.run(set_aside_counts, write=False)
        aside.addCallback(self._set_aside_gauge)
        depth = self.sender.refresh_depth()
        return defer.gatherResults([depth, aside], consumeErrors=True).addCallbacks(
            lambda results: results[0], lambda f: f.value.subFailure)

    def _set_aside_gauge(self, counts: dict[str, int]) -> None:
        for queue, n in counts.items():
            self.metrics.sms_set_aside.labels(queue=queue).set(n)

    def startService(self) -> None:
        service.Service.startService(self)
        if not self.enabled:
            log.info("SMS channel disabled ([smpp] enabled = false)")
            return
        self.handler.startService()
        self.receipts.startService()
        self.sender.startService()
        self.esme.startService()
        self.esme.whenBound().addCallbacks(lambda _: self.sender.kick(), lambda f: None)
        self._metrics_loop = task.LoopingCall(self._refresh)
        self._metrics_loop.clock = self.reactor
        self._metrics_loop.start(self.metrics_s, now=True)
        store = getattr(self.db, "store", None)
        if store is not None and not store.is_sqlite:
            self._statistics_loop = task.LoopingCall(self.refresh_statistics)
            self._statistics_loop.clock = self.reactor
            self._statistics_loop.start(self.statistics_s, now=True)

    def _refresh(self) -> defer.Deferred:
        return self.refresh_metrics().addErrback(
            lambda f: log_failure(log, "could not refresh the SMS metrics", f))

    def refresh_statistics(self) -> defer.Deferred:
        """ANALYZE the queue tables that changed enough since their last ANALYZE (PostgreSQL);
        warns once if autovacuum is off."""
        d = self.db.run(refresh_queue_statistics)
        d.addCallback(self._check_autovacuum)
        d.addErrback(lambda f: log_failure(log, "could not refresh the SMS tables' statistics",
                                           f))
        return d

    def _check_autovacuum(self, on: bool) -> None:
        if not on and not self._warned_autovacuum:
            self._warned_autovacuum = True
            log.warn("PostgreSQL autovacuum is off: the SMS queue tables ({tables}) keep every "
                     "dead row and slow down; turn it on", tables=", ".join(QUEUE_TABLES))

    def stopService(self) -> defer.Deferred:
        service.Service.stopService(self)
        if not self.enabled:
            return defer.succeed(None)
        for loop in (self._metrics_loop, self._statistics_loop):
            if loop is not None and loop.running:
                loop.stop()
        d = defer.ensureDeferred(self._stop())
        d.addTimeout(self.stop_timeout_s, self.reactor)
        d.addErrback(lambda f: log.warn(
            "SMS channel stop incomplete ({why}); claims still held lapse by themselves",
            why=f.getErrorMessage()))
        return d

    async def _stop(self) -> None:
        await self.handler.stopService()
        await self.esme.stopService()
        await self.receipts.stopService()
        await self.sender.stopService()
        self.metrics.smpp_bound.set(0)


def sms_service(config: Config, db: DatabaseService, metrics: Metrics, reactor: IReactorTCP,
                **kwargs: Any) -> SmsService:
    """The SMS channel for the composition root (see the module doc)."""
    return SmsService(config, db, metrics, reactor=reactor, **kwargs)
