"""The unit of work the use cases are given: one transaction, the repositories of each area on
it, and savepoints. It commits when the use case returns and rolls back when it raises; a use
case never commits."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from core.messaging.repository import MessagingRepository
from core.ports.calls import CallsRepository, TicketsRepository
from core.ports.fulfilment import FulfilmentRepository
from core.ports.jobs import JobsRepository
from core.ports.members import MembersRepository
from core.ports.orders import OrdersRepository
from core.ports.outbox import OutboxRepository


class SetAsideRecord(Protocol):
    """One item a queue set aside, as ``loyalty queues list`` shows it."""

    @property
    def item(self) -> str: ...  # mo:12, mt:34, job:5
    @property
    def msisdn(self) -> str: ...
    @property
    def what(self) -> str: ...  # the MO text, the MT template, the job name
    @property
    def attempts(self) -> int: ...
    @property
    def error(self) -> str | None: ...
    @property
    def at(self) -> datetime | None: ...


class UnitOfWork(Protocol):
    # Read-only: a unit of work may hold any implementation of each repository.
    @property
    def members(self) -> MembersRepository: ...
    @property
    def orders(self) -> OrdersRepository: ...
    @property
    def jobs(self) -> JobsRepository: ...
    @property
    def calls(self) -> CallsRepository: ...
    @property
    def tickets(self) -> TicketsRepository: ...
    @property
    def outbox(self) -> OutboxRepository: ...
    @property
    def fulfilment(self) -> FulfilmentRepository: ...
    @property
    def messaging(self) -> MessagingRepository: ...

    def savepoint(self) -> contextlib.AbstractContextManager[None]:
        """A block whose writes are undone, alone, when it raises (the exception goes on)."""
        ...

    def refresh_statistics(self, *tables: str) -> None:
        """Let the database's planner see tables a bulk load just grew."""
        ...

    # --- the queues' set-aside items (MO, MT and job items alike) ---------------------------

    def set_aside_counts(self) -> dict[str, int]:
        ...

    def set_aside_items(self, limit: int = 1000) -> Sequence[SetAsideRecord]:
        ...

    def release_set_aside(self, queue: str, item_id: int, now: datetime) -> bool:
        """Put a set-aside item back in its queue, due now, attempts counted afresh."""
        ...

    def discard_set_aside(self, queue: str, item_id: int, now: datetime) -> bool:
        """Give up on a set-aside item for good (kept, as ``discarded``, for the record)."""
        ...
