"""CSV imports: members, points, rewards, delivery updates.

A file is checked whole before anything is written, then applied in one unit of work: a bad row
is reported with its line number and nothing of that file is applied.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from core.accounts import deduct_points, hash_pin, validate_pin
from core.domain import (
    LANGUAGES,
    POINT_SOURCES,
    Channel,
    DomainError,
    InvalidInput,
    LedgerKind,
    Reward,
    RewardKind,
)
from core.import_csv import (  # noqa: F401 - ImportFailed and MAX_ERRORS are part of this API
    MAX_ERRORS,
    FileUnreadable,
    ImportFailed,
    Rows,
    optional,
    parse_date,
    parse_int,
)
from core.lines import fresh_member, import_line_status, is_reissued, parse_status, subscriber_id
from core.ports import UnitOfWork
from core.progress import StepProgress
from core.rules import ProgrammeRules, expiry_for, tier_valid_until
from core.service_desk import update_delivery

CHUNK = 2000
ANALYZE_EVERY = 5  # chunks (10k rows): keep the planner's idea of a growing table current
DEDUCTION_SOURCES = {"penalty": LedgerKind.PENALTY, "adjustment": LedgerKind.ADJUSTMENT}
EVERY_PINS = 200  # PIN hashes between progress reports


@dataclass(frozen=True)
class ImportReport:
    kind: str
    rows: int
    created: int
    updated: int
    skipped: int
    # Rows refused while the others were applied (line number, why): the line-status import.
    problems: tuple[tuple[int, str], ...] = ()


def _progress(progress: StepProgress | None, step: str, done: int, total: int) -> None:
    if progress:
        progress(step, done, total)


def import_members(uow: UnitOfWork, rules: ProgrammeRules, path: str | Path, now: datetime,
                   progress: StepProgress | None = None, *,
                   encoding: str | None = None) -> ImportReport:
    rows = Rows("members", path, encoding)
    tiers = [t.code for t in rules.tiers]
    today = rules.today(now)
    parsed, seen, pins = [], {}, []
    for line, row in rows:
        try:
            msisdn = rules.numbering.normalise(row["msisdn"])
            if msisdn in seen:
                raise InvalidInput(f"number repeated (first at line {seen[msisdn]})")
            seen[msisdn] = line
            if not row["name"]:
                raise InvalidInput("name is empty")
            if row["language"] not in LANGUAGES:
                raise InvalidInput(f"language must be one of {', '.join(LANGUAGES)}")
            values = dict(msisdn=msisdn, name=row["name"], language=row["language"])
            values.update(_tier_grant(row, tiers, today, rules))
            values.update(_warning_choices(row))
            values.update(_line_columns(row))
            if row.get("pin"):
                pins.append((len(parsed), validate_pin(row["pin"])))
            parsed.append(values)
        except DomainError as exc:
            rows.error(line, str(exc))
    rows.raise_if_bad()
    # PBKDF2 releases the GIL: hash on a few threads so large files do not crawl.
    with ThreadPoolExecutor(max_workers=4) as pool:
        if pins:
            _progress(progress, "hashing PINs", 0, len(pins))
        digests = pool.map(hash_pin, [p for _, p in pins])
        for done, ((index, _), digest) in enumerate(zip(pins, digests, strict=True), 1):
            parsed[index].update(pin_hash=digest, pin_failures=0, pin_locked_until=None)
            if done % EVERY_PINS == 0 or done == len(pins):
                _progress(progress, "hashing PINs", done, len(pins))
    created = updated = 0
    for start in range(0, len(parsed), CHUNK):
        if start % (CHUNK * ANALYZE_EVERY) == 0:
            uow.refresh_statistics("members")
        chunk = parsed[start:start + CHUNK]
        stored_ids = uow.members.subscriber_ids(r["msisdn"] for r in chunk)
        existing = set(stored_ids)
        reissued = 0
        for values in chunk:
            if values["msisdn"] in existing and is_reissued(stored_ids[values["msisdn"]],
                                                           values.get("subscriber_id")):
                # Another subscription on the number: the old owner's account is retired.
                uow.members.retire_member(values["msisdn"], now,
                                          fresh_member(rules, values, now))
                reissued += 1
            elif values["msisdn"] not in existing:
                # A new member starts at her granted tier, else at the first one.
                values.setdefault("tier_code", values.get("granted_tier_code") or tiers[0])
                values.setdefault("tier_valid_until", values.get("granted_tier_until"))
                values["created_at"] = now
        new, changed = uow.members.upsert_members(chunk, existing=existing)
        created, updated = created + new + reissued, updated + changed - reissued
        _progress(progress, "writing", start + len(chunk), len(parsed))
    return ImportReport("members", len(parsed), created, updated, 0)


def _tier_grant(row: dict[str, str], tiers: list[str], today: date,
                rules: ProgrammeRules) -> dict[str, object]:
    """Columns ``tier`` and ``tier_until``: the member holds at least that tier through the
    date (by default the end of a tier validity period starting today)."""
    until = optional(row, "tier_until", lambda v: parse_date(v, "tier_until"))
    if not row.get("tier"):
        if until:
            raise InvalidInput("tier_until needs a tier")
        return {}
    if row["tier"] not in tiers:
        raise InvalidInput(f"unknown tier {row['tier']!r} (one of {', '.join(tiers)})")
    if until is not None and until < today:
        raise InvalidInput(f"tier_until {until} is in the past")
    return dict(granted_tier_code=row["tier"],
                granted_tier_until=until or tier_valid_until(today, rules.programme))


def _warning_choices(row: dict[str, str]) -> dict[str, object]:
    """Optional columns ``warnings`` (``on``/``off``) and ``warning_channel`` (``sms``/
    ``voice``); an empty or missing one leaves the member's choice as it is."""
    values: dict[str, object] = {}
    warnings = (row.get("warnings") or "").lower()
    if warnings:
        if warnings not in ("on", "off"):
            raise InvalidInput(f"warnings must be on or off, not {row['warnings']!r}")
        values["warning_opt_out"] = warnings == "off"
    channel = (row.get("warning_channel") or "").lower()
    if channel:
        if channel not in ("sms", "voice"):
            raise InvalidInput(
                f"warning_channel must be sms or voice, not {row['warning_channel']!r}")
        values["warning_channel"] = channel
    return values


def _line_columns(row: dict[str, str]) -> dict[str, object]:
    """Optional ``status`` (line status), ``subscriber_id`` and ``address`` (where gifts go);
    empty or missing leaves the member's as it is (a closed line stays closed)."""
    values: dict[str, object] = {}
    if row.get("status"):
        values["line_status"] = parse_status(row["status"])
    sub_id = subscriber_id(row.get("subscriber_id"))
    if sub_id:
        values["subscriber_id"] = sub_id
    if row.get("address"):
        values["delivery_address"] = " ".join(row["address"].split())
    return values


def import_points(uow: UnitOfWork, rules: ProgrammeRules, path: str | Path, now: datetime,
                  progress: StepProgress | None = None, *,
                  encoding: str | None = None) -> ImportReport:
    rows = Rows("points", path, encoding)
    limits = rules.programme
    today = rules.today(now)
    parsed, seen = [], {}
    for line, row in rows:
        try:
            msisdn = rules.numbering.normalise(row["msisdn"])
            points = parse_int(row["points"], "points", maximum=limits.max_points_per_row,
                               limit_name="programme.max_points_per_row")
            source = row["source"]
            if points == 0:
                raise InvalidInput("points is zero")
            if points > 0 and source not in POINT_SOURCES:
                raise InvalidInput(f"unknown source {source!r} "
                                   f"(one of {', '.join(POINT_SOURCES)})")
            if points < 0 and source not in DEDUCTION_SOURCES:
                raise InvalidInput("negative points need source penalty or adjustment")
            earned_on = parse_date(row["earned_on"], "earned_on")
            if earned_on > today:
                raise InvalidInput(f"earned_on {earned_on} is in the future (today is {today} "
                                   f"in {limits.timezone})")
            reference = row["reference"]
            if not reference:
                raise InvalidInput("reference is empty (it is what makes re-imports safe)")
            entry = (line, msisdn, points, source, earned_on, reference)
            if reference in seen:
                first = seen[reference]
                if first[1:] != entry[1:]:
                    raise InvalidInput(
                        f"reference {reference!r} is also on line {first[0]} with other "
                        f"content: line {first[0]} has {_described(first[1:5])}, this line "
                        f"has {_described(entry[1:5])}")
                continue  # the same row twice: applied once
            seen[reference] = entry
            parsed.append(entry)
        except DomainError as exc:
            rows.error(line, str(exc))
    uow.refresh_statistics("members", "ledger")
    known = uow.members.existing_msisdns(p[1] for p in parsed)
    stored = uow.members.imported_points(p[5] for p in parsed)
    fresh = []
    for entry in parsed:
        line, msisdn, points, source, earned_on, reference = entry
        if msisdn not in known:
            rows.error(line, "no member with that number (import members first)")
        elif reference in stored:
            if not _same_as_stored(entry, stored[reference]):
                rows.error(line, f"reference {reference!r} was imported before with other "
                           f"content: stored {_described(stored[reference])}, this line has "
                           f"{_described(entry[1:5])}")
        else:
            fresh.append(entry)
    _check_balances(uow, rows, fresh, now, limits.max_balance)
    rows.raise_if_bad()

    created = 0
    for start in range(0, len(fresh), CHUNK):
        if start and start % (CHUNK * ANALYZE_EVERY) == 0:
            uow.refresh_statistics("ledger")
        chunk = fresh[start:start + CHUNK]
        credits = [p for p in chunk if p[2] > 0]
        uow.members.add_lots_bulk([
            dict(msisdn=m, amount=pts, remaining=pts, source=src, earned_on=day,
                 expires_at=expiry_for(day, rules.programme), reference=ref, expired=False,
                 created_at=now) for _, m, pts, src, day, ref in credits])
        uow.members.add_ledger_bulk(
            [dict(msisdn=m, kind=LedgerKind.CREDIT, amount=pts, reason=src,
                  channel=Channel.IMPORT, order_no=None, reference=ref, created_at=now)
             for _, m, pts, src, day, ref in credits])
        for _, msisdn, points, source, _, reference in chunk:
            if points < 0:
                deduct_points(uow, rules, msisdn, -points, DEDUCTION_SOURCES[source], source,
                              now, channel=Channel.IMPORT, reference=reference)
        created += len(chunk)
        _progress(progress, "writing", start + len(chunk), len(fresh))
    return ImportReport("points", len(rows), created, 0, len(rows) - created)


def _described(content: tuple) -> str:
    """(msisdn, points, source, earned_on or None) as a line of a problem report."""
    msisdn, points, source, earned_on = content
    return f"{msisdn} {points} {source}" + (f" {earned_on}" if earned_on else "")


def _same_as_stored(entry: tuple, stored: tuple) -> bool:
    """A re-imported row is the same when number, points, source and date match. A deduction
    keeps only what it took (less than asked when the balance was short) and no date."""
    _, msisdn, points, source, earned_on, _ = entry
    s_msisdn, s_points, s_source, s_earned_on = stored
    if (msisdn, source) != (s_msisdn, s_source) or (points > 0) != (s_points > 0):
        return False
    if points > 0:
        return (points, earned_on) == (s_points, s_earned_on)
    return points <= s_points <= 0


def _check_balances(uow: UnitOfWork, rows: Rows, fresh: list[tuple], now: datetime,
                    max_balance: int) -> None:
    """Refuse the row that would lift a member's balance above ``max_balance`` (file order)."""
    balances = uow.messaging.balance_summaries(sorted({e[1] for e in fresh}), now)
    running: dict[str, int] = {}
    for line, msisdn, points, *_ in fresh:
        if msisdn not in balances:  # its stored points are out of any range
            rows.error(line, "the member's account needs attention (stored points out of "
                       "range; see loyalty check ledger)")
            continue
        before = running.get(msisdn, balances[msisdn][0])
        running[msisdn] = max(0, before + points)
        if running[msisdn] > max_balance:
            rows.error(line, f"this row would lift the balance to {running[msisdn]}, above "
                       f"the largest allowed, {max_balance} (programme.max_balance)")


def import_rewards(uow: UnitOfWork, rules: ProgrammeRules, path: str | Path, now: datetime,
                   progress: StepProgress | None = None, *,
                   encoding: str | None = None) -> ImportReport:
    rows = Rows("rewards", path, encoding)
    most = rules.programme.max_balance  # a dearer reward could never be redeemed
    tiers = [t.code for t in rules.tiers]
    parsed, seen = [], {}
    for line, row in rows:
        try:
            code = row["code"].upper()
            if not code.isalnum() or len(code) > 20:
                raise InvalidInput("code must be letters and digits, at most 20")
            if code in seen:
                raise InvalidInput(f"code repeated (first at line {seen[code]})")
            seen[code] = line
            if row["kind"] not in set(RewardKind):
                raise InvalidInput(f"kind must be one of {', '.join(RewardKind)}")
            if not row["name_zh"] or not row["name_en"]:
                raise InvalidInput("name_zh and name_en are needed")
            prices = tuple((t, parse_int(row[f"price_{t}"], f"price_{t}", minimum=1, maximum=most,
                                         limit_name="programme.max_balance"))
                           for t in tiers if row.get(f"price_{t}"))
            start_day = optional(row, "available_from",
                                 lambda v: parse_date(v, "available_from"))
            end_day = optional(row, "available_until",
                               lambda v: parse_date(v, "available_until"))
            if start_day and end_day and end_day < start_day:
                raise InvalidInput("available_until is before available_from")
            parsed.append(Reward(
                code, row["name_zh"], row["name_en"], row["kind"],
                parse_int(row["points"], "points", minimum=1, maximum=most,
                          limit_name="programme.max_balance"),
                optional(row, "stock", lambda v: parse_int(v, "stock", minimum=0)),
                start_day, end_day,
                optional(row, "per_member_limit",
                         lambda v: parse_int(v, "per_member_limit", minimum=1)),
                optional(row, "sort_order", lambda v: parse_int(v, "sort_order")) or line,
                prices))
        except DomainError as exc:
            rows.error(line, str(exc))
    rows.raise_if_bad()
    created = 0
    for done, reward in enumerate(parsed, 1):
        created += uow.orders.upsert_reward(reward)
        if done % CHUNK == 0:
            _progress(progress, "writing", done, len(parsed))
    _progress(progress, "writing", len(parsed), len(parsed))
    return ImportReport("rewards", len(parsed), created, len(parsed) - created, 0)


def import_deliveries(uow: UnitOfWork, rules: ProgrammeRules, path: str | Path, now: datetime,
                      progress: StepProgress | None = None, *,
                      encoding: str | None = None) -> ImportReport:
    rows = Rows("deliveries", path, encoding)
    parsed = []
    for line, row in rows:
        try:
            at = optional(row, "updated_at", datetime.fromisoformat) or now
            if at.tzinfo is None:
                at = at.replace(tzinfo=rules.zone)
            parsed.append((line, row["order_no"], row["status"], row["courier"] or None,
                           row["tracking_no"] or None, at))
        except (ValueError, DomainError) as exc:
            rows.error(line, str(exc))
    for line, order_no, status, courier, tracking_no, at in parsed:
        try:
            update_delivery(uow, rules, order_no, status, courier, tracking_no, at)
        except DomainError as exc:
            rows.error(line, str(exc) if str(exc) != order_no else f"unknown order {order_no}")
    rows.raise_if_bad()
    _progress(progress, "writing", len(parsed), len(parsed))
    return ImportReport("deliveries", len(parsed), 0, len(parsed), 0)


IMPORTERS = {"members": import_members, "points": import_points, "rewards": import_rewards,
             "deliveries": import_deliveries, "line-status": import_line_status}
