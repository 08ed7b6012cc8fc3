"""What the messaging store hands the core: frozen records, safe to pass between threads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple


@dataclass(frozen=True)
class StoredMO:
    id: int
    msisdn: str  # source_addr as received
    text: str
    received_at: datetime
    attempts: int = 0  # handling attempts that failed so far
    repeat_of: int | None = None  # the message this one repeats (same text, inside the window)


class MOPart(NamedTuple):
    """A stored segment of a concatenated MO message (a row, as the query returns it)."""

    id: int
    seq: int
    text: str


@dataclass(frozen=True)
class RateWindow:
    msisdn: str
    window_start: datetime
    count: int
    warned: bool


@dataclass(frozen=True)
class OutboxRow:
    id: int
    msisdn: str
    language: str
    template: str | None
    params: dict[str, Any]
    body: str | None
    kind: str
    attempts: int
    message_ids: tuple[str | None, ...]  # per part; None = not accepted yet


@dataclass(frozen=True)
class HeldReceipt:
    id: int
    id_key: str
    message_id: str
    stat: str | None
    err: str | None


@dataclass(frozen=True)
class PartStats:
    outbox_id: int
    state: str
    parts: int
    stats: dict[int, str | None]  # part index -> last stat
