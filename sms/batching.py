"""Group commit: many small durable writes made by one transaction.

Items added while no flush is running are flushed on the next reactor turn (so everything
that arrived in one turn goes together); items added while a flush runs wait for the next one.
Under load a batch is whatever arrived during the previous flush, so the number of
transactions stays low while the latency at low load stays one transaction.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from core.domain import mask_msisdn

_NUMBER = re.compile(r"(?<!\d)\+?\d{7,15}(?!\d)")


def scrubbed(text: str) -> str:
    """``text`` with anything that looks like a phone number masked (138****5678): database
    errors quote their parameters, domain errors their subject."""
    return _NUMBER.sub(lambda m: mask_msisdn(m.group()), text)


def log_failure(log: Logger, message: str, failure: Failure | None = None, **fields: Any) -> None:
    """Log a failure with its traceback, phone numbers masked."""
    text = scrubbed(failure.getTraceback() if failure is not None else "")
    log.error(message + "\n{traceback}", traceback=text, **fields)


class GroupCommit:
    """``add(item)`` returns a Deferred firing with that item's result from
    ``flush(items) -> list of results`` (a Deferred or a plain list, same order), or failing
    with the flush's failure."""

    def __init__(self, flush: Callable[[list[Any]], Any], clock: IReactorTime, *,
                 max_items: int = 1000) -> None:
        self.flush = flush
        self.clock = clock
        self.max_items = max_items
        self._pending: list[tuple[Any, defer.Deferred]] = []
        self._busy = False
        self._call: IDelayedCall | None = None
        self._idle: list[defer.Deferred] = []
        self.flushes = 0  # how many flushes ran (for tests and the bench)

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def busy(self) -> bool:
        return self._busy or bool(self._pending)

    def add(self, item: Any) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self._pending.append((item, d))
        self._schedule()
        return d

    def when_idle(self) -> defer.Deferred:
        """Fires once nothing is pending or being flushed."""
        if not self.busy:
            return defer.succeed(None)
        d: defer.Deferred = defer.Deferred()
        self._idle.append(d)
        return d

    def _schedule(self) -> None:
        if not self._busy and self._call is None and self._pending:
            self._call = self.clock.callLater(0, self._run)

    def _run(self) -> None:
        self._call = None
        if self._busy or not self._pending:
            return
        batch, self._pending = self._pending[:self.max_items], self._pending[self.max_items:]
        self._busy = True
        self.flushes += 1
        d = defer.maybeDeferred(self.flush, [item for item, _ in batch])
        d.addBoth(self._done, batch)

    def _done(self, result: Any, batch: list[tuple[Any, defer.Deferred]]) -> None:
        self._busy = False
        if isinstance(result, Failure):
            for _, d in batch:
                d.errback(result)
        else:
            for (_, d), r in zip(batch, result, strict=True):
                d.callback(r)
        if self._pending:
            self._schedule()
        elif not self._busy:
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)
