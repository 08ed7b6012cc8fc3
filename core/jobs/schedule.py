"""Calendar arithmetic for the jobs: schedule occurrences, run keys and quiet hours.

Pure functions of an aware UTC instant and the programme's zone: schedule times and quiet
hours are local wall-clock times, instants are UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from core.config import JobsConfig, parse_hhmm
from core.rules import add_months

# Outbox kinds the server sends on its own (not answers to a subscriber): held during the
# quiet hours, when queued and again when sent (a backlog must not spill into the night).
NOTICE_KINDS = frozenset({"expiry_warning", "auto_redeem", "tier_changed"})


def local_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of local wall-clock ``at`` on ``day``."""
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def in_quiet_hours(now: datetime, zone: ZoneInfo, quiet_start: time, quiet_end: time) -> bool:
    t = now.astimezone(zone).time()
    if quiet_start == quiet_end:
        return False
    if quiet_start > quiet_end:  # wraps midnight: 21:00-08:00
        return t >= quiet_start or t < quiet_end
    return quiet_start <= t < quiet_end


def release_time(now: datetime, zone: ZoneInfo, config: JobsConfig) -> datetime:
    """When a message queued at ``now`` may go: ``now``, or the end of the quiet hours."""
    start, end = parse_hhmm(config.quiet_start), parse_hhmm(config.quiet_end)
    if not in_quiet_hours(now, zone, start, end):
        return now
    local = now.astimezone(zone)
    day = local.date() if local.time() < end else local.date() + timedelta(days=1)
    return local_instant(day, end, zone)


def within_hours(now: datetime, zone: ZoneInfo, hours: tuple[time, time]) -> bool:
    """True while local time is inside ``hours`` (start inclusive, end exclusive)."""
    start, end = hours
    t = now.astimezone(zone).time()
    if start <= end:
        return start <= t < end
    return t >= start or t < end


# --- schedule ----------------------------------------------------------------------------------


def occurrences_around(now: datetime, zone: ZoneInfo, at: str,
                       day_of_month: int | None) -> list[datetime]:
    """Occurrences of a daily (or monthly, on ``day_of_month``) local time near ``now``:
    from the previous period to the one after next, in order."""
    when = parse_hhmm(at)
    today = now.astimezone(zone).date()
    if day_of_month is None:
        days = [today + timedelta(days=n) for n in range(-1, 3)]
    else:
        first = today.replace(day=1)
        days = [add_months(first, n).replace(day=day_of_month) for n in range(-1, 3)]
    return [local_instant(day, when, zone) for day in days]


def next_occurrence(after: datetime, zone: ZoneInfo, at: str,
                    day_of_month: int | None = None) -> datetime:
    """The first occurrence strictly after ``after``."""
    return next(t for t in occurrences_around(after, zone, at, day_of_month) if t > after)


def last_occurrence(now: datetime, zone: ZoneInfo, at: str,
                    day_of_month: int | None = None) -> datetime:
    """The latest occurrence at or before ``now``."""
    return [t for t in occurrences_around(now, zone, at, day_of_month) if t <= now][-1]


def run_key(when: datetime, zone: ZoneInfo, monthly: bool) -> str:
    """The key of the run a job does at ``when``: the local date, or YYYY-MM for monthly jobs."""
    local = when.astimezone(zone)
    return f"{local:%Y-%m}" if monthly else local.date().isoformat()
