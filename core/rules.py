"""Pure calendar and points rules, parameterised by the programme configuration."""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from core.config import Config, CourierConfig, ProgrammeConfig, TierConfig
from core.domain import InsufficientPoints, PointsLot
from core.numbering import NumberingPlan


def local_date(now: datetime, zone: ZoneInfo) -> date:
    return now.astimezone(zone).date()


def start_of_local_day(day: date, zone: ZoneInfo) -> datetime:
    """The UTC instant at which ``day`` begins in the programme's zone."""
    return datetime.combine(day, time(0, 0), tzinfo=zone).astimezone(UTC)


def expiry_for(earned_on: date, programme: ProgrammeConfig) -> datetime:
    """Points earned in year N are good through 31 December of year N+validity_years.

    Returns the first instant they are gone: 00:00:00 local on the following 1 January, so a
    lot is spendable exactly while ``now < expires_at``.
    """
    return start_of_local_day(date(earned_on.year + programme.validity_years + 1, 1, 1),
                              programme.zone)


def last_valid_day(expires_at: datetime, zone: ZoneInfo) -> date:
    """The date a subscriber is told: the last local day the points can be spent."""
    return (expires_at - timedelta(microseconds=1)).astimezone(zone).date()


def add_months(day: date, months: int) -> date:
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def qualifying_window_start(today: date) -> date:
    """First day of the rolling 12 months that ends today (inclusive)."""
    return add_months(today, -12) + timedelta(days=1)


def tier_for(qualifying_points: int, tiers: Sequence[TierConfig]) -> TierConfig:
    chosen = tiers[0]
    for tier in tiers:
        if qualifying_points >= tier.threshold:
            chosen = tier
    return chosen


def tier_rank(code: str, tiers: Sequence[TierConfig]) -> int:
    for rank, tier in enumerate(tiers):
        if tier.code == code:
            return rank
    return 0


def tier_valid_until(today: date, programme: ProgrammeConfig) -> date:
    """A tier granted today holds to the end of the month ``tier_validity_months`` ahead."""
    end = add_months(today.replace(day=1), programme.tier_validity_months)
    return end.replace(day=calendar.monthrange(end.year, end.month)[1])


def tier_floor(granted_code: str | None, granted_until: date | None, today: date,
               tiers: Sequence[TierConfig]) -> tuple[TierConfig, date] | None:
    """The tier granted by ops while its grant lasts (through ``granted_until``), else None."""
    if granted_code is None or granted_until is None or granted_until < today:
        return None
    for tier in tiers:
        if tier.code == granted_code:
            return tier, granted_until
    return None


def plan_spend(lots: Sequence[PointsLot], amount: int, now: datetime) -> list[tuple[int, int]]:
    """Which lots to draw ``amount`` from: soonest expiry first, then oldest lot.

    Returns (lot_id, points) pairs; raises InsufficientPoints when the spendable lots fall short.
    """
    spendable = sorted(
        (lot for lot in lots if lot.remaining > 0 and lot.expires_at > now),
        key=lambda lot: (lot.expires_at, lot.id),
    )
    balance = sum(lot.remaining for lot in spendable)
    if amount > balance:
        raise InsufficientPoints(balance, amount)
    plan, left = [], amount
    for lot in spendable:
        if left == 0:
            break
        take = min(lot.remaining, left)
        plan.append((lot.id, take))
        left -= take
    return plan


@dataclass(frozen=True)
class ProgrammeRules:
    """What every use case needs to know about the programme: its calendar and its ladder."""

    programme: ProgrammeConfig
    tiers: tuple[TierConfig, ...]
    numbering: NumberingPlan = NumberingPlan()
    couriers: tuple[CourierConfig, ...] = ()

    @classmethod
    def from_config(cls, config: Config) -> ProgrammeRules:
        plan = NumberingPlan(config.numbering.country_code, config.numbering.national_pattern)
        return cls(config.programme, config.tiers, plan, config.couriers)

    @property
    def zone(self) -> ZoneInfo:
        return self.programme.zone

    def tier(self, code: str) -> TierConfig:
        for tier in self.tiers:
            if tier.code == code:
                return tier
        return self.tiers[0]

    def today(self, now: datetime) -> date:
        return local_date(now, self.zone)
