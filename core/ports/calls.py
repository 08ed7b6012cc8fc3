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
                   prefix: str, day: date) -> Ticket:
        ...
