"""What the use cases need of the store about calls, service-desk tickets and the SMS they
queue for sending."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, Protocol

from core.domain import Ticket


class CallsRepository(Protocol):
    """Call records of the hotline."""

    def record_call_start(self, *, uniqueid: str, msisdn_masked: str, script: str,
                          now: datetime) -> int:
        """A new call record; returns its id (uniqueids repeat, ids do not)."""
        ...

    def record_call_end(self, *, uniqueid: str, menu_path: str, outcome: str,
                        now: datetime, call_id: int | None = None) -> None:
        """End the record ``call_id``; without it, the latest unended one for ``uniqueid``
        (never every call that shares the uniqueid)."""
        ...


class TicketsRepository(Protocol):
    """Service-desk tickets."""

    def add_ticket(self, *, msisdn: str, kind: str, text: str, channel: str, now: datetime,
                   prefix: str, day: date) -> Ticket:
        ...


class OutboxRepository(Protocol):
    """SMS queued for sending (rendered at send time), and how many are due."""

    def queue_message(self, *, msisdn: str, language: str, kind: str, now: datetime,
                      template: str | None = None, params: dict[str, Any] | None = None,
                      body: str | None = None, dedupe_key: str | None = None,
                      not_before: datetime | None = None) -> int:
        ...

    def queue_messages_bulk(self, rows: Sequence[dict[str, Any]], now: datetime) -> None:
        """Many outbox rows at once (template + params, rendered at send time); a row whose
        ``dedupe_key`` is there already is skipped. ``params`` is a dict, or its JSON text."""
        ...

    def outbox_for(self, msisdn: str) -> list[dict[str, Any]]:
        ...

    def due_message_count(self, now: datetime, kind: str | None = None) -> int:
        """Queued outbox messages whose ``not_before`` has come."""
        ...
