"""Delivery receipts from the SMSC: each is stored (matched to its MT part, or held) before it
is acknowledged; on a database error the SMSC gets a temporary error and redelivers it. The
matching and final states are ``core.messaging.receipts``; a periodic sweep matches held
receipts and forgets those held too long."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from twisted.application import service
from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from core.messaging.receipts import ReceiptItem, sweep_receipts
from core.metrics import Metrics
from ops.dbservice import DatabaseService
from sms.esme_types import DeliveryReceipt
from sms.failures import log_failure
from sms.pdu import ESME_RTHROTTLED, normalise_message_id

if TYPE_CHECKING:  # sms.outbox imports this module
    from sms.outbox import MTEvents

log = Logger()


def receipt_item(receipt: DeliveryReceipt) -> ReceiptItem:
    keys = receipt.id_keys or (normalise_message_id(receipt.message_id)
                               if receipt.message_id else frozenset())
    stat = (receipt.stat or "").upper()[:10] or None
    return ReceiptItem(frozenset(keys), receipt.message_id or "", stat, receipt.err)


# --- the reactor side -------------------------------------------------------------------------


class ReceiptMatcher(service.Service):
    """``on_receipt`` for the ESME session, plus the periodic sweep of held receipts."""

    def __init__(self, db: DatabaseService, metrics: Metrics, *, clock: IReactorTime,
                 now: Callable[[], datetime], events: MTEvents, hold_s: float = 600.0,
                 sweep_s: float = 5.0) -> None:
        self.db = db
        self.metrics = metrics
        self.clock = clock
        self.now = now
        self.hold_s = hold_s
        self.sweep_s = sweep_s
        self.batch = events  # shared with the outbox sender: one transaction for both
        self._sweep: task.LoopingCall | None = None

    def on_receipt(self, receipt: DeliveryReceipt) -> Any:
        item = receipt_item(receipt)
        if not item.keys:
            log.warn("receipt without a message id ignored: {text!r}", text=receipt.text[:80])
            return 0
        d = self.batch.add(item)
        d.addCallbacks(lambda _: 0, self._store_failed)
        return d

    def _store_failed(self, failure: Failure) -> int:
        log_failure(log, "could not store delivery receipts; the SMSC will redeliver", failure)
        return ESME_RTHROTTLED

    def _count(self, counts: dict[str, int]) -> None:
        for state, n in counts.items():
            self.metrics.receipts.labels(state=state).inc(n)

    def sweep(self) -> defer.Deferred:
        d = self.db.run(sweep_receipts, self.now(), self.hold_s)
        d.addCallback(self._count)
        d.addErrback(lambda f: log_failure(log, "receipt sweep failed", f))
        return d

    def startService(self) -> None:
        super().startService()
        self._sweep = task.LoopingCall(self.sweep)
        self._sweep.clock = self.clock
        self._sweep.start(self.sweep_s, now=False)

    def stopService(self) -> defer.Deferred:
        super().stopService()
        if self._sweep is not None and self._sweep.running:
            self._sweep.stop()
        return self.batch.when_idle()
