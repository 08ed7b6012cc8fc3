"""Use cases about a member's account: identity, PIN, balance, tier, history, points in and out.

Every use case takes a unit of work, the programme rules and ``now``; none commits: the unit
of work commits what they write when they return (see ``ops.dbservice``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import date, datetime, timedelta

from core.config import TierConfig
from core.domain import (
    LANGUAGES,
    POINT_SOURCES,
    Balance,
    Channel,
    InsufficientPoints,
    InvalidInput,
    LedgerEntry,
    LedgerKind,
    LedgerProblem,
    Member,
    PinNotSet,
    SecretCheck,
    TierStatus,
    UnknownMember,
)
from core.ports import UnitOfWork
from core.rules import (
    ProgrammeRules,
    expiry_for,
    last_valid_day,
    plan_spend,
    qualifying_window_start,
    tier_floor,
    tier_for,
    tier_rank,
    tier_valid_until,
)

PIN_ITERATIONS = 20_000


def require_member(uow: UnitOfWork, rules: ProgrammeRules, msisdn: str, *,
                   for_update: bool = False) -> Member:
    """The member with this number, in any form the programme's numbering plan accepts
    (UnknownMember names the number in the plan's national form)."""
    number = rules.numbering.normalise(msisdn)
    member = uow.members.get_member(number, for_update=for_update)
    if member is None:
        raise UnknownMember(number)
    return member


def get_member(uow: UnitOfWork, rules: ProgrammeRules, msisdn: str) -> Member | None:
    return uow.members.get_member(rules.numbering.normalise(msisdn))


def balance(uow: UnitOfWork, rules: ProgrammeRules, msisdn: str, now: datetime) -> Balance:
    member = require_member(uow, rules, msisdn)
    points, next_expiry, expiring = uow.members.balance_summary(member.msisdn, now)
    return Balance(member.msisdn, points, expiring,
                   last_valid_day(next_expiry, rules.zone) if next_expiry else None)


def tier_status(uow: UnitOfWork, rules: ProgrammeRules, msisdn: str, now: datetime) -> TierStatus:
    """The tier in force: the reviewed tier while valid, or higher if earned since."""
    return member_tier(uow, rules, require_member(uow, rules, msisdn), now)


def member_tier(uow: UnitOfWork, rules: ProgrammeRules, member: Member,
                now: datetime) -> TierStatus:
    today = rules.today(now)
    return tier_of(rules, member, _qualifying_points(uow, rules, member, today), today)


def tier_of(rules: ProgrammeRules, member: Member, qualifying: int, today: date) -> TierStatus:
    """The tier in force given the member's qualifying points (``qualifying_points_since``):
    pure, so the SMS channel can compute it for a whole batch from one query."""
    earned = tier_for(qualifying, rules.tiers)
    current, valid_until = earned, None
    if member.tier_valid_until and member.tier_valid_until >= today:
        kept = rules.tier(member.tier_code)
        if tier_rank(kept.code, rules.tiers) >= tier_rank(earned.code, rules.tiers):
            current, valid_until = kept, member.tier_valid_until
    if valid_until is None:
        valid_until = tier_valid_until(today, rules.programme)
    current, valid_until = _not_below_grant(member, current, valid_until, today, rules)
    rank = tier_rank(current.code, rules.tiers)
    nxt = rules.tiers[rank + 1] if rank + 1 < len(rules.tiers) else None
    return TierStatus(
        member.msisdn, current.code, current.name_zh, current.name_en, valid_until, qualifying,
        current.priority, nxt.code if nxt else None, nxt.name_zh if nxt else None,
        nxt.name_en if nxt else None, max(0, nxt.threshold - qualifying) if nxt else 0,
    )


def _qualifying_points(uow: UnitOfWork, rules: ProgrammeRules, member: Member,
                       today: date) -> int:
    """Points from qualifying sources in the window that sets the member's tier."""
    return uow.members.earned_points(member.msisdn, qualifying_window_start(today),
                                     rules.programme.qualifying_sources)


def qualifying_points_since(rules: ProgrammeRules, today: date) -> tuple[date, tuple[str, ...]]:
    """(first day, sources) of the points that set a tier on ``today``: what
    ``_qualifying_points`` sums, for a batched read of many members."""
    return qualifying_window_start(today), tuple(rules.programme.qualifying_sources)


def _not_below_grant(member: Member, tier: TierConfig, valid_until: date, today: date,
                     rules: ProgrammeRules) -> tuple[TierConfig, date]:
    """The tier (and its end) raised to a tier granted by ops while the grant lasts; the same
    tier as granted holds at least as long as the grant."""
    granted = tier_floor(member.granted_tier_code, member.granted_tier_until, today, rules.tiers)
    if granted is None:
        return tier, valid_until
    granted_tier, granted_until = granted
    if granted_tier.code == tier.code:
        return tier, max(valid_until, granted_until)
    if tier_rank(granted_tier.code, rules.tiers) >= tier_rank(tier.code, rules.tiers):
        return granted
    return tier, valid_until


def review_tier(uow: UnitOfWork, rules: ProgrammeRules, msisdn: str,
                now: datetime) -> tuple[str, str]:
    """Persist the tier the member qualifies for. Returns (old code, new code)."""
    member = require_member(uow, rules, msisdn, for_update=True)
    today = rules.today(now)
    qualifying = _qualifying_points(uow, rules, member, today)
    earned = tier_for(qualifying, rules.tiers)
    valid_until = tier_valid_until(today, rules.programme)
    earned, valid_until = _not_below_grant(member, earned, valid_until, today, rules)
    still_valid = member.tier_valid_until is not None and member.tier_valid_until >= today
    old_rank = tier_rank(member.tier_code, rules.tiers)
    new_rank = tier_rank(earned.code, rules.tiers)
    if new_rank > old_rank or not still_valid:
        uow.members.update_member(member.msisdn, tier_code=earned.code,
                                  tier_valid_until=valid_until)
        return member.tier_code, earned.code
    return member.tier_code, member.tier_code


def history(uow: UnitOfWork, rules: ProgrammeRules, msisdn: str, now: datetime, *, offset: int = 0,
            limit: int = 5) -> list[LedgerEntry]:
    member = require_member(uow, rules, msisdn)
    return uow.members.history(member.msisdn, offset, limit)


# --- PIN ----------------------------------------------------------------------------------


def hash_pin(pin: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode(), salt, PIN_ITERATIONS)
    return f"pbkdf2_sha256${PIN_ITERATIONS}${salt.hex()}${digest.hex()}"


def pin_matches(pin: str, stored: str) -> bool:
    _, iterations, salt, digest = stored.split("$")
    candidate = hashlib.pbkdf2_hmac("sha256", pin.encode(), bytes.fromhex(salt), int(iterations))
    return hmac.compare_digest(candidate.hex(), digest)


def validate_pin(pin: str) -> str:
    if not (pin.isdigit() and pin.isascii() and 4 <= len(pin) <= 8):
        raise InvalidInput("a PIN is 4 to 8 digits")
    return pin


def set_pin(uow: UnitOfWork, rules: ProgrammeRules, msisdn: str, pin: str, now: datetime) -> None:
    member = require_member(uow, rules, msisdn, for_update=True)
    uow.members.update_member(member.msisdn, pin_hash=hash_pin(validate_pin(pin)), pin_failures=0,
                              pin_locked_until=None)


def verify_pin(uow: UnitOfWork, rules: ProgrammeRules, msisdn: str, pin: str,
               now: datetime) -> SecretCheck:
    """Check the service PIN: accepted, wrong (tries left) or locked; the last of
    ``pin_max_tries`` wrong tries locks it. A wrong try is written, not raised."""
    member = require_member(uow, rules, msisdn, for_update=True)
    locked = lock_in_force(member, now)
    if locked is not None:
        return locked
    stored, failures = uow.members.member_pin(member.msisdn)
    if stored is None:
        raise PinNotSet(member.msisdn)
    if pin_matches(pin, stored):
        if failures:
            uow.members.update_member(member.msisdn, pin_failures=0)
        return SecretCheck(member=member)
    return record_failed_secret(uow, rules, member.msisdn, failures, now)


def unlock_pin(uow: UnitOfWork, rules: ProgrammeRules, msisdn: str, now: datetime) -> bool:
    """Lift a PIN lock (ops, after checking who calls) and forget wrong tries; True when a
    lock was in force. The PIN itself is unchanged."""
    member = require_member(uow, rules, msisdn, for_update=True)
    was_locked = lock_in_force(member, now) is not None
    uow.members.update_member(member.msisdn, pin_failures=0, pin_locked_until=None)
    return was_locked


def lock_in_force(member: Member, now: datetime) -> SecretCheck | None:
    """The refusal while the member's PIN is locked; None when it is not."""
    if member.pin_locked_until is not None and member.pin_locked_until > now:
        return SecretCheck(locked_until=member.pin_locked_until)
    return None


def record_failed_secret(uow: UnitOfWork, rules: ProgrammeRules, msisdn: str, failures: int,
                         now: datetime) -> SecretCheck:
    """A wrong PIN or one-time code: counts toward the lock; returns the refusal."""
    failures += 1
    if failures >= rules.programme.pin_max_tries:
        until = now + timedelta(minutes=rules.programme.pin_lock_minutes)
        uow.members.update_member(msisdn, pin_failures=0, pin_locked_until=until)
        return SecretCheck(locked_until=until)
    uow.members.update_member(msisdn, pin_failures=failures)
    return SecretCheck(tries_left=rules.programme.pin_max_tries - failures)


# --- preferences --------------------------------------------------------------------------


def set_language(uow: UnitOfWork, rules: ProgrammeRules, msisdn: str, language: str,
                 now: datetime) -> None:
    if language not in LANGUAGES:
        raise InvalidInput(f"language must be one of {', '.join(LANGUAGES)}")
    member = require_member(uow, rules, msisdn, for_update=True)
    uow.members.update_member(member.msisdn, language=language)


def set_warning_preferences(uow: UnitOfWork, rules: ProgrammeRules, msisdn: str, now: datetime, *,
                            opt_out: bool | None = None, channel: str | None = None) -> None:
    member = require_member(uow, rules, msisdn, for_update=True)
    fields = {}
    if opt_out is not None:
        fields["warning_opt_out"] = opt_out
    if channel is not None:
        if channel not in ("sms", "voice"):
            raise InvalidInput("warning channel must be sms or voice")
        fields["warning_channel"] = channel
    if fields:
        uow.members.update_member(member.msisdn, **fields)


# --- points in and out --------------------------------------------------------------------


def credit_points(uow: UnitOfWork, rules: ProgrammeRules, msisdn: str, points: int, source: str,
                  earned_on: date, now: datetime, *, reference: str | None = None,
                  channel: str = Channel.OPS, reason: str | None = None) -> int | None:
    """Add a lot and its ledger entry. Returns the lot id, or None if ``reference`` was seen."""
    if points <= 0:
        raise InvalidInput("credited points must be positive")
    if source not in POINT_SOURCES:
        raise InvalidInput(f"unknown points source {source!r}")
    limits = rules.programme
    if points > limits.max_points_per_row:
        raise InvalidInput(f"{points} points in one credit is above the largest allowed, "
                           f"{limits.max_points_per_row} (programme.max_points_per_row)")
    member = require_member(uow, rules, msisdn, for_update=True)
    if reference and uow.members.existing_references([reference]):
        return None
    # Checked under the member's row lock, so two credits cannot both slip under the cap.
    balance, _, _ = uow.members.balance_summary(member.msisdn, now)
    if balance + points > limits.max_balance:
        raise InvalidInput(f"this credit would lift the balance to {balance + points}, above "
                           f"the largest allowed, {limits.max_balance} (programme.max_balance)")
    lot_id = uow.members.add_lot(msisdn=member.msisdn, amount=points, source=source,
                                 earned_on=earned_on,
                                 expires_at=expiry_for(earned_on, rules.programme),
                                 reference=reference, now=now)
    uow.members.add_ledger(msisdn=member.msisdn, kind=LedgerKind.CREDIT, amount=points,
                           reason=reason or source, channel=channel, now=now, reference=reference)
    return lot_id


def deduct_points(uow: UnitOfWork, rules: ProgrammeRules, msisdn: str, points: int, kind: str,
                  reason: str,
                  now: datetime, *, channel: str = Channel.OPS, allow_partial: bool = True,
                  reference: str | None = None) -> int:
    """A penalty or negative adjustment, soonest-expiring lots first. Never below zero:
    with ``allow_partial`` only what the balance holds is taken. Returns the points taken."""
    if kind not in (LedgerKind.PENALTY, LedgerKind.ADJUSTMENT):
        raise InvalidInput("deductions are penalties or adjustments")
    member = require_member(uow, rules, msisdn, for_update=True)
    lots = uow.members.spendable_lots(member.msisdn, now)
    try:
        plan = plan_spend(lots, points, now)
    except InsufficientPoints as short:
        if not allow_partial:
            raise
        plan = plan_spend(lots, short.balance, now)
    taken = sum(p for _, p in plan)
    for lot_id, take in plan:
        uow.members.take_from_lot(lot_id, take)
    # Recorded even when nothing was left to take, so the reason (and reference) is kept.
    uow.members.add_ledger(msisdn=member.msisdn, kind=kind, amount=-taken, reason=reason,
                           channel=channel, now=now, draws=plan, reference=reference)
    return taken


def expire_lapsed_lots(uow: UnitOfWork, rules: ProgrammeRules, now: datetime, *,
                       batch: int = 5000) -> tuple[int, int]:
    """Expire up to ``batch`` lots past their date with ledger entries. Returns (lots, points).

    Safe to run again: expired lots are marked and not picked twice.
    """
    lapsed = uow.members.lapsed_lots(now, batch)
    by_member: dict[str, list] = {}
    for lot in lapsed:
        by_member.setdefault(lot.msisdn, []).append(lot)
    rows, draws = [], []
    for msisdn, member_lots in by_member.items():
        total = sum(lot.remaining for lot in member_lots)
        rows.append(dict(msisdn=msisdn, kind=LedgerKind.EXPIRY, amount=-total,
                         reason="points expired", channel=Channel.JOB, order_no=None,
                         reference=None, created_at=now))
        draws.append([(lot.id, lot.remaining) for lot in member_lots])
    uow.members.add_ledger_bulk(rows, draws)
    uow.members.mark_lots_expired([lot.id for lot in lapsed])
    return len(lapsed), sum(lot.remaining for lot in lapsed)


def check_ledger(uow: UnitOfWork, rules: ProgrammeRules) -> list[LedgerProblem]:
    return uow.members.ledger_problems()
