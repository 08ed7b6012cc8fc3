"""What the use cases need of the store about calls and service-desk tickets."""

from __future__ import annotations

from datetime import date, datetime
from typing import Protocol

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
                   prefix: str, day: date, recording_path: str | None = None,
                   order_no: str | None = None) -> Ticket:
        ...

    def get_ticket(self, ref: str, *, for_update: bool = False) -> Ticket | None:
        ...

    def list_tickets(self, *, msisdn: str | None = None, open_only: bool = False,
                     kind: str | None = None, limit: int = 100) -> list[Ticket]:
        """Newest first."""
        ...

    def resolve_ticket(self, ref: str, *, outcome: str, credit_points: int | None,
                       now: datetime) -> bool:
        """Mark an open ticket resolved; False when it was not open (resolved already)."""
        ...
