"""Look up while the caller listens.

A caller spends seconds on every prompt; the database answers in milliseconds, but under load
its queue can take tens. So once the member is known, the hotline reads everything the main
menu's answers need (tier, balance, first history page) in ONE unit of work, started before
the welcome is played. When the caller presses 1, 2 or 3 the answer is already there and the
next AGI command goes out at once. The snapshot is dropped (and read again) after anything the
call itself changes (a redemption, the language); it is at most one call old otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from core.accounts import balance, history, tier_status
from core.domain import Balance, LedgerEntry, TierStatus
from core.ports import UnitOfWork


@dataclass(frozen=True)
class Snapshot:
    tier: TierStatus
    balance: Balance
    history: list[LedgerEntry]  # newest first, up to the page size + 1 (to know if more)


def menu_snapshot(uow: UnitOfWork, rules: Any, msisdn: str, now: datetime,
                  history_limit: int) -> Snapshot:
    """The main menu's read-only answers, from one transaction (database thread)."""
    return Snapshot(tier_status(uow, rules, msisdn, now), balance(uow, rules, msisdn, now),
                    history(uow, rules, msisdn, now, offset=0, limit=history_limit))


class Pending:
    """A result that may still be on its way. A failure is kept, never left unhandled; it is
    raised to whoever waits for the result."""

    def __init__(self, d: Deferred) -> None:
        self._done = False
        self._result: Any = None
        self._failure: Failure | None = None
        self._waiters: list[Deferred] = []
        d.addCallbacks(self._ok, self._failed)

    def _ok(self, result: Any) -> None:
        self._done, self._result = True, result
        self._wake()

    def _failed(self, failure: Failure) -> None:
        self._done, self._failure = True, failure
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            w.callback(None)

    async def get(self) -> Any:
        if not self._done:
            waiter: Deferred = Deferred()
            self._waiters.append(waiter)
            await waiter
        if self._failure is not None:
            self._failure.raiseException()
        return self._result
