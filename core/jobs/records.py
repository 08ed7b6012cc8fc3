"""Frozen records the jobs' queries return (no Twisted, no SQLAlchemy)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, NamedTuple


class ExpiringBatch(NamedTuple):
    """The points of one member that expire at one instant (the member's lots sharing it).
    A named tuple: the expiry-warning job reads a million of them."""

    msisdn: str
    expires_at: datetime
    points: int
    language: str
    warning_channel: str
    opted_out: bool


@dataclass(frozen=True)
class ExpiryWarning:
    id: int
    msisdn: str
    expires_at: datetime
    stage: str
    points: int
    channel: str
    state: str
    attempts: int
    updated_at: datetime


@dataclass(frozen=True)
class VoiceCall:
    """A voice warning claimed for a call attempt (``attempts`` counts this one)."""

    warning_id: int
    msisdn: str
    points: int
    expires_at: datetime
    attempts: int


@dataclass(frozen=True)
class AutoRedemption:
    id: int
    msisdn: str
    reward_code: str


@dataclass(frozen=True)
class TierCandidate:
    msisdn: str
    language: str
    tier_code: str
    tier_valid_until: date | None
    qualifying_points: int
    granted_tier_code: str | None = None
    granted_tier_until: date | None = None


@dataclass(frozen=True)
class JobRun:
    id: int
    job: str
    run_key: str
    state: str  # running, done, failed, interrupted
    started_at: datetime
    finished_at: datetime | None
    summary: dict[str, Any] = field(default_factory=dict)
