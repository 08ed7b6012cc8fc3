"""The fulfilment worker: POSTs claimed service and voucher orders to the provisioning API.

Every ``fulfilment.poll_interval_s`` (and once more at once when a round filled its batch) a
round claims due orders on the database thread (``core.fulfilment.claim_fulfilments``: each
leased for ``fulfilment.lease_s``), POSTs them concurrently on the reactor with treq, one
POST per order per attempt, and records each outcome in its own unit of work
(``core.fulfilment.record_attempt``). The ``Idempotency-Key`` is the order number, so an order
POSTed again after a crash (its lease lapsed) or by another process is applied once by the API.
The lease is longer than a POST may take (``lease_s > timeout_s``, checked by the config), so a
live POST is never doubled.

Contract (docs/fulfilment.md): 2xx applied (``reference`` kept from a JSON body), 4xx refused
for good (status and a short reason kept), anything else, a timeout or a connection error is
retried with backoff and fails after ``max_attempts``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

from treq.client import HTTPClient
from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool

from core.clock import utc_now_from
from core.config import FulfilmentConfig
from core.domain import FulfilmentItem, mask_msisdn
from core.fulfilment import (
    Attempt,
    RetryPolicy,
    claim_fulfilments,
    fulfilment_queue,
    record_attempt,
    request_body,
)
from core.metrics import Metrics
from ops.coalesce import Coalescer
from ops.dbservice import DatabaseService

log = Logger(namespace="loyalty.fulfilment")
REASON_CHARS = 120  # of a refusal's reason kept on the order


def _reason(body: bytes) -> str:
    """A short reason from an answer's body: its JSON ``reason``/``error``/``message``, else
    the text itself."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:REASON_CHARS]
    if isinstance(data, dict):
        for key in ("reason", "error", "message"):
            if data.get(key):
                return str(data[key])[:REASON_CHARS]
    return text[:REASON_CHARS]


def _reference(body: bytes) -> str:
    try:
        data = json.loads(body.decode("utf-8", "replace"))
    except ValueError:
        return ""
    return str(data.get("reference") or "") if isinstance(data, dict) else ""


class FulfilmentService(Service):
    """Drives the fulfilment queue against ``config.url`` (only built when it is set)."""

    name = "fulfilment"

    def __init__(self, config: FulfilmentConfig, db: DatabaseService, metrics: Metrics,
                 reactor: IReactorTime, *, now: Callable[[], datetime] | None = None) -> None:
        self.config = config
        self.db = db
        self.metrics = metrics
        self.reactor = reactor
        self.now = now or utc_now_from(reactor)
        self.policy = RetryPolicy(config.max_attempts, config.backoff_base_s,
                                  config.backoff_cap_s)
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._http = HTTPClient(Agent(reactor, pool=self._pool))
        header = config.header()
        self._headers = {"Content-Type": "application/json"}
        if header is not None:
            self._headers[header[0]] = header[1]
        self._rounds = Coalescer(self._round, reactor)
        self._poll: task.LoopingCall | None = None

    def startService(self) -> None:
        super().startService()
        self._poll = task.LoopingCall(self.kick)
        self._poll.clock = self.reactor
        self._poll.start(self.config.poll_interval_s, now=True)

    def stopService(self) -> defer.Deferred[None]:
        """Stop claiming; the round in flight finishes (its POSTs are bounded by timeout_s)."""
        super().stopService()
        if self._poll is not None and self._poll.running:
            self._poll.stop()
        d = self._rounds.when_idle()
        d.addCallback(lambda _: self._pool.closeCachedConnections())
        return d

    def kick(self) -> defer.Deferred[None]:
        return self._rounds.kick()

    async def _round(self) -> None:
        if not self.running:
            return
        try:
            items = await self.db.run(claim_fulfilments, self.now(), self.config.lease_s,
                                      self.config.batch_size)
            if items:
                await defer.gatherResults([defer.Deferred.fromCoroutine(self._fulfil(i))
                                           for i in items], consumeErrors=True)
            await self._refresh_queue()
        except Exception:  # noqa: BLE001 - the next poll tries again; claims lapse
            log.failure("fulfilment round failed; the next poll tries again")
            return
        if len(items) >= self.config.batch_size and self.running:
            self.reactor.callLater(0, self.kick)

    async def _refresh_queue(self) -> None:
        depth, oldest = await self.db.run(fulfilment_queue, write=False)
        self.metrics.fulfilment_queue.set(depth)
        age = (self.now() - oldest).total_seconds() if oldest is not None else 0
        self.metrics.fulfilment_oldest_age.set(max(0.0, age))

    async def _fulfil(self, item: FulfilmentItem) -> None:
        started = self.reactor.seconds()
        attempt = await self.post(item)
        self.metrics.fulfilment_latency.observe(self.reactor.seconds() - started)
        self.metrics.fulfilment_attempts.labels(outcome=attempt.outcome).inc()
        try:
            result = await self.db.run(record_attempt, item, attempt, self.policy, self.now())
        except Exception:  # noqa: BLE001 - the claim lapses and the order is POSTed again
            log.failure("order {order_no}: could not record the fulfilment outcome; it is "
                        "tried again after its lease", order_no=item.order_no)
            return
        fields = dict(order_no=item.order_no, msisdn=mask_msisdn(item.msisdn),
                      attempt=item.attempts, outcome=attempt.outcome, status=attempt.status,
                      detail=attempt.detail, result=result)
        if result == "failed":
            log.warn("order {order_no} for {msisdn} failed at attempt {attempt} ({status} "
                     "{detail}): refunded, member told", **fields)
        elif result == "retry":
            log.warn("order {order_no} attempt {attempt}: {detail}; retried later", **fields)
        else:
            log.info("order {order_no} for {msisdn}: {result} (attempt {attempt})", **fields)

    async def post(self, item: FulfilmentItem) -> Attempt:
        """One POST of one order, never raising: what it came to."""
        d = defer.Deferred.fromCoroutine(self._exchange(item))
        d.addTimeout(self.config.timeout_s, self.reactor)
        try:
            status, body = await d
        except defer.TimeoutError:
            return Attempt("error", f"timeout after {self.config.timeout_s:g}s")
        except Exception as exc:  # noqa: BLE001 - connection refused/lost, DNS, TLS...
            return Attempt("error", f"{type(exc).__name__}: {exc}"[:REASON_CHARS])
        if 200 <= status < 300:
            return Attempt("applied", _reference(body), status)
        if 400 <= status < 500:
            return Attempt("refused", _reason(body) or f"HTTP {status}", status)
        return Attempt("error", f"HTTP {status} {_reason(body)}".strip(), status)

    async def _exchange(self, item: FulfilmentItem) -> tuple[int, bytes]:
        headers = dict(self._headers, **{"Idempotency-Key": item.order_no})
        body = json.dumps(request_body(item)).encode()
        response = await self._http.post(self.config.url, data=body, headers=headers)
        return response.code, await response.content()
