"""What the use cases and jobs need of the store about the SMS they queue for sending."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol


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
