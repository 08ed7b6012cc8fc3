"""The operator's lines: who may redeem, gifts' addresses, line-status imports, re-issued
numbers.

A suspended line or one in arrears may ask (balance, history, tier, catalogue, delivery) but
not redeem; a closed line is no member at all (the store leaves it out wherever a member is
looked up). A number whose import brings another subscriber id than the one stored was
re-issued: the old owner's account is retired under an archive key and the number starts a
fresh member.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

from core.accounts import require_member
from core.domain import (
    AddressNeeded,
    DomainError,
    InvalidInput,
    LineBarred,
    LineStatus,
    Member,
    Reward,
    RewardKind,
)
from core.import_csv import Rows, optional, parse_date
from core.ports import UnitOfWork
from core.progress import StepProgress
from core.rules import ProgrammeRules

BARRED = (LineStatus.SUSPENDED, LineStatus.ARREARS)
EVERY_ROWS = 500  # rows between progress reports


def check_may_redeem(member: Member) -> None:
    """Refuse any redemption on a suspended line or one in arrears."""
    if member.line_status in BARRED:
        raise LineBarred(member.line_status)


def check_gift_address(member: Member, reward: Reward) -> None:
    """A gift goes by post: refused while the member has no delivery address."""
    if reward.kind == RewardKind.GIFT and not (member.delivery_address or "").strip():
        raise AddressNeeded(reward.code)


def redeem_allowed(uow: UnitOfWork, rules: ProgrammeRules, msisdn: str, now: datetime) -> None:
    """Raise ``LineBarred`` when the member's line may not redeem (the IVR asks first)."""
    check_may_redeem(require_member(uow, rules, msisdn))


def parse_status(value: str) -> str:
    status = value.strip().lower()
    if status not in set(LineStatus):
        raise InvalidInput(f"status must be one of {', '.join(LineStatus)}, not {value!r}")
    return status


def subscriber_id(value: str | None) -> str | None:
    text = (value or "").strip()
    if len(text) > 40:
        raise InvalidInput("subscriber_id is longer than 40 characters")
    return text or None


def is_reissued(stored: str | None, given: str | None) -> bool:
    """Both known and different: the number now belongs to another subscription."""
    return bool(stored) and bool(given) and stored != given


def fresh_member(rules: ProgrammeRules, values: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The number's row for its new owner: the import's values over a new member's defaults
    (nothing of the old owner, not even the name, is kept)."""
    base: dict[str, Any] = dict(name="", language=rules.programme.default_language,
                                tier_code=rules.tiers[0].code, created_at=now)
    base.update(values)
    base["tier_code"] = values.get("granted_tier_code") or values.get("tier_code") \
        or rules.tiers[0].code
    base.setdefault("tier_valid_until", values.get("granted_tier_until"))
    return base


# --- the line-status import ------------------------------------------------------------------


def import_line_status(uow: UnitOfWork, rules: ProgrammeRules, path: str | Path, now: datetime,
                       progress: StepProgress | None = None, *, encoding: str | None = None):
    """``msisdn,status[,subscriber_id][,effective]``: each good row is applied; a bad one is
    reported with its line number and leaves the others alone. A number's rows are applied in
    ``effective`` order (file order when equal), so the latest change stands."""
    from core.imports import ImportReport

    rows = Rows("line-status", path, encoding)
    today = rules.today(now)
    parsed: list[tuple[date, int, str, str, str | None]] = []
    for line, row in rows:
        try:
            msisdn = rules.numbering.normalise(row["msisdn"])
            status = parse_status(row["status"])
            effective = optional(row, "effective", lambda v: parse_date(v, "effective"))
            if effective is not None and effective > today:
                raise InvalidInput(f"effective {effective} is in the future (today is {today} "
                                   f"in {rules.programme.timezone}): import it on that day")
            parsed.append((effective or today, line, msisdn, status,
                           subscriber_id(row.get("subscriber_id"))))
        except DomainError as exc:
            rows.error(line, str(exc))
    parsed.sort(key=lambda p: (p[0], p[1]))
    updated = created = 0
    for done, (_, line, msisdn, status, sub_id) in enumerate(parsed, 1):
        try:
            with uow.savepoint():
                created += _apply_status(uow, rules, msisdn, status, sub_id, now)
                updated += 1
        except DomainError as exc:
            rows.error(line, str(exc))
        if done % EVERY_ROWS == 0 or done == len(parsed):
            if progress:
                progress("writing", done, len(parsed))
    return ImportReport("line-status", len(rows), created, updated - created, 0,
                        tuple(sorted(rows.errors)))


def _apply_status(uow: UnitOfWork, rules: ProgrammeRules, msisdn: str, status: str,
                  sub_id: str | None, now: datetime) -> int:
    """Set one line's status (and subscriber id); 1 if the number was re-issued."""
    member = uow.members.get_member(msisdn, for_update=True, include_closed=True)
    if member is None:
        raise InvalidInput("no member with that number (import members first)")
    if is_reissued(member.subscriber_id, sub_id):
        uow.members.retire_member(msisdn, now, fresh_member(
            rules, dict(subscriber_id=sub_id, line_status=status), now))
        return 1
    fields: dict[str, Any] = dict(line_status=status)
    if sub_id:
        fields["subscriber_id"] = sub_id
    uow.members.update_member(msisdn, **fields)
    return 0
