"""What the ops console shows beyond what the ``loyalty`` command prints: an order's fulfilment
outcome next to its status, and the fulfilment queue with each order's last error.

Read-only use cases (``uow, rules, ...``): pure, never commit; frozen results.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from core.domain import FulfilmentItem
from core.ports import UnitOfWork
from core.rules import ProgrammeRules


@dataclass(frozen=True)
class FulfilmentOutcome:
    reference: str | None  # the provisioning API's (or the import's) reference
    error: str | None  # why the last try failed, or why the order failed


@dataclass(frozen=True)
class PendingFulfilment:
    item: FulfilmentItem
    error: str | None  # the last try's error (retried after ``item.due_at``)


@dataclass(frozen=True)
class FulfilmentBacklog:
    waiting: int  # orders waiting or in flight
    oldest_at: datetime | None  # the oldest one's order time
    oldest_age_s: float | None
    orders: tuple[PendingFulfilment, ...]  # the oldest first, at most ``limit``


def order_fulfilment(uow: UnitOfWork, rules: ProgrammeRules,
                     order_nos: Iterable[str]) -> dict[str, FulfilmentOutcome]:
    """order number -> its fulfilment reference and error (orders without either left out)."""
    found = {}
    for order_no in order_nos:
        reference, error = uow.fulfilment.fulfilment_outcome(order_no)
        if reference or error:
            found[order_no] = FulfilmentOutcome(reference, error)
    return found


def fulfilment_backlog(uow: UnitOfWork, rules: ProgrammeRules, now: datetime, *,
                       limit: int = 50) -> FulfilmentBacklog:
    waiting, oldest = uow.fulfilment.fulfilment_queue()
    age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else None
    orders = tuple(PendingFulfilment(item, uow.fulfilment.fulfilment_outcome(item.order_no)[1])
                   for item in uow.fulfilment.pending_fulfilments(limit))
    return FulfilmentBacklog(waiting, oldest, age, orders)
