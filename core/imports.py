"""CSV imports: members, points, rewards, delivery updates.

A file is checked whole before anything is written, then applied in one unit of work: a bad row
is reported with its line number and nothing of that file is applied.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
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
    normalise_msisdn,
)
from core.rules import ProgrammeRules, expiry_for, tier_valid_until
from core.service_desk import update_delivery

Progress = Callable[[int, int], None]
CHUNK = 2000
ANALYZE_EVERY = 5  # chunks (10k rows): keep the planner's idea of a growing table current
MAX_ERRORS = 20
REQUIRED = {
    "members": ("msisdn", "name", "language"),
    "points": ("msisdn", "points", "source", "earned_on", "reference"),
    "rewards": ("code", "name_zh", "name_en", "kind", "points", "stock"),
    "deliveries": ("order_no", "status", "courier", "tracking_no"),
}
DEDUCTION_SOURCES = {"penalty": LedgerKind.PENALTY, "adjustment": LedgerKind.ADJUSTMENT}


@dataclass(frozen=True)
class ImportReport:
    kind: str
    rows: int
    created: int
    updated: int
    skipped: int


class ImportFailed(Exception):
    """The file was rejected; ``errors`` are (line number, message) pairs."""

    def __init__(self, path: str, errors: list[tuple[int, str]]) -> None:
        self.errors = errors
        lines = "\n".join(f"  line {line}: {message}" for line, message in errors)
        super().__init__(f"{path}: nothing imported, {len(errors)} problem(s):\n{lines}")


class _Rows:
    """Rows of one CSV file with their line numbers, and the problems found in them."""

    def __init__(self, kind: str, path: str | Path) -> None:
        self.path = str(path)
        text = Path(path).read_text(encoding="utf-8-sig")
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED[kind] if c not in header]
        if missing:
            raise ImportFailed(self.path, [(1, f"header lacks column(s): {', '.join(missing)}")])
        reader.fieldnames = header
        self.rows = [(reader.line_num, {k: (v or "").strip() for k, v in row.items() if k})
                     for row in reader]
        self.errors: list[tuple[int, str]] = []

    def __iter__(self) -> Iterator[tuple[int, dict[str, str]]]:
        return iter(self.rows)

    def error(self, line: int, message: str) -> None:
        self.errors.append((line, message))

    def raise_if_bad(self) -> None:
        if self.errors:
            raise ImportFailed(self.path, sorted(self.errors)[:MAX_ERRORS])


def _int(value: str, what: str, *, minimum: int | None = None) -> int:
    try:
        number = int(value)
    except ValueError:
        raise InvalidInput(f"{what} {value!r} is not a whole number") from None
    if minimum is not None and number < minimum:
        raise InvalidInput(f"{what} must be at least {minimum}")
    return number


def _date(value: str, what: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{what} {value!r} is not a date (YYYY-MM-DD)") from None


def _optional(row: dict[str, str], key: str, parse: Callable[[str], object]):
    value = row.get(key, "")
    return parse(value) if value else None


def _progress(progress: Progress | None, done: int, total: int) -> None:
    if progress:
        progress(done, total)


def import_members(uow, rules: ProgrammeRules, path, now: datetime,
                   progress: Progress | None = None) -> ImportReport:
    rows = _Rows("members", path)
    tiers = [t.code for t in rules.tiers]
    today = rules.today(now)
    parsed, seen, pins = [], {}, []
    for line, row in rows:
        try:
            msisdn = normalise_msisdn(row["msisdn"])
            if msisdn in seen:
                raise InvalidInput(f"number repeated (first at line {seen[msisdn]})")
            seen[msisdn] = line
            if not row["name"]:
                raise InvalidInput("name is empty")
            if row["language"] not in LANGUAGES:
                raise InvalidInput(f"language must be one of {', '.join(LANGUAGES)}")
            values = dict(msisdn=msisdn, name=row["name"], language=row["language"])
            values.update(_tier_grant(row, tiers, today, rules))
            if row.get("pin"):
                pins.append((len(parsed), validate_pin(row["pin"])))
            parsed.append(values)
        except DomainError as exc:
            rows.error(line, str(exc))
    rows.raise_if_bad()
    # PBKDF2 releases the GIL: hash on a few threads so large files do not crawl.
    with ThreadPoolExecutor(max_workers=4) as pool:
        for (index, _), digest in zip(pins, pool.map(hash_pin, [p for _, p in pins]),
                                      strict=True):
            parsed[index].update(pin_hash=digest, pin_failures=0, pin_locked_until=None)
    created = updated = 0
    for start in range(0, len(parsed), CHUNK):
        if start % (CHUNK * ANALYZE_EVERY) == 0:
            uow.refresh_statistics("members")
        chunk = parsed[start:start + CHUNK]
        existing = uow.existing_msisdns(r["msisdn"] for r in chunk)
        for values in chunk:
            if values["msisdn"] not in existing:
                # A new member starts at her granted tier, else at the first one.
                values.setdefault("tier_code", values.get("granted_tier_code") or tiers[0])
                values.setdefault("tier_valid_until", values.get("granted_tier_until"))
                values["created_at"] = now
        new, changed = uow.upsert_members(chunk)
        created, updated = created + new, updated + changed
        _progress(progress, start + len(chunk), len(parsed))
    uow.commit()
    return ImportReport("members", len(parsed), created, updated, 0)


def _tier_grant(row: dict[str, str], tiers: list[str], today: date,
                rules: ProgrammeRules) -> dict[str, object]:
    """Columns ``tier`` and ``tier_until``: the member holds at least that tier through the
    date (by default the end of a tier validity period starting today)."""
    until = _optional(row, "tier_until", lambda v: _date(v, "tier_until"))
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


def import_points(uow, rules: ProgrammeRules, path, now: datetime,
                  progress: Progress | None = None) -> ImportReport:
    rows = _Rows("points", path)
    parsed, seen = [], {}
    for line, row in rows:
        try:
            msisdn = normalise_msisdn(row["msisdn"])
            points = _int(row["points"], "points")
            source = row["source"]
            if points == 0:
                raise InvalidInput("points is zero")
            if points > 0 and source not in POINT_SOURCES:
                raise InvalidInput(f"unknown source {source!r} "
                                   f"(one of {', '.join(POINT_SOURCES)})")
            if points < 0 and source not in DEDUCTION_SOURCES:
                raise InvalidInput("negative points need source penalty or adjustment")
            earned_on = _date(row["earned_on"], "earned_on")
            reference = row["reference"]
            if not reference:
                raise InvalidInput("reference is empty (it is what makes re-imports safe)")
            if reference in seen:
                raise InvalidInput(f"reference repeated (first at line {seen[reference]})")
            seen[reference] = line
            parsed.append((line, msisdn, points, source, earned_on, reference))
        except DomainError as exc:
            rows.error(line, str(exc))
    uow.refresh_statistics("members", "ledger")
    known = uow.existing_msisdns(p[1] for p in parsed)
    for line, msisdn, *_ in parsed:
        if msisdn not in known:
            rows.error(line, "no member with that number (import members first)")
    rows.raise_if_bad()

    created = skipped = 0
    for start in range(0, len(parsed), CHUNK):
        if start and start % (CHUNK * ANALYZE_EVERY) == 0:
            uow.refresh_statistics("ledger")
        chunk = parsed[start:start + CHUNK]
        already = uow.existing_references(p[5] for p in chunk)
        credits = [p for p in chunk if p[5] not in already and p[2] > 0]
        uow.add_lots_bulk([
            dict(msisdn=m, amount=pts, remaining=pts, source=src, earned_on=day,
                 expires_at=expiry_for(day, rules.programme), reference=ref, expired=False,
                 created_at=now) for _, m, pts, src, day, ref in credits])
        uow.add_ledger_bulk(
            [dict(msisdn=m, kind=LedgerKind.CREDIT, amount=pts, reason=src,
                  channel=Channel.IMPORT, order_no=None, reference=ref, created_at=now)
             for _, m, pts, src, day, ref in credits])
        for _, msisdn, points, source, _, reference in chunk:
            if points < 0 and reference not in already:
                deduct_points(uow, rules, msisdn, -points, DEDUCTION_SOURCES[source], source,
                              now, channel=Channel.IMPORT, commit=False, reference=reference)
        created += len(chunk) - len(already)
        skipped += len(already)
        _progress(progress, start + len(chunk), len(parsed))
    uow.commit()
    return ImportReport("points", len(parsed), created, 0, skipped)


def import_rewards(uow, rules: ProgrammeRules, path, now: datetime,
                   progress: Progress | None = None) -> ImportReport:
    rows = _Rows("rewards", path)
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
            prices = tuple((t, _int(row[f"price_{t}"], f"price_{t}", minimum=1))
                           for t in tiers if row.get(f"price_{t}"))
            start_day = _optional(row, "available_from", lambda v: _date(v, "available_from"))
            end_day = _optional(row, "available_until", lambda v: _date(v, "available_until"))
            if start_day and end_day and end_day < start_day:
                raise InvalidInput("available_until is before available_from")
            parsed.append(Reward(
                code, row["name_zh"], row["name_en"], row["kind"],
                _int(row["points"], "points", minimum=1),
                _optional(row, "stock", lambda v: _int(v, "stock", minimum=0)),
                start_day, end_day,
                _optional(row, "per_member_limit",
                          lambda v: _int(v, "per_member_limit", minimum=1)),
                _optional(row, "sort_order", lambda v: _int(v, "sort_order")) or line,
                prices))
        except DomainError as exc:
            rows.error(line, str(exc))
    rows.raise_if_bad()
    created = 0
    for done, reward in enumerate(parsed, 1):
        created += uow.upsert_reward(reward)
        if done % CHUNK == 0:
            _progress(progress, done, len(parsed))
    _progress(progress, len(parsed), len(parsed))
    uow.commit()
    return ImportReport("rewards", len(parsed), created, len(parsed) - created, 0)


def import_deliveries(uow, rules: ProgrammeRules, path, now: datetime,
                      progress: Progress | None = None) -> ImportReport:
    rows = _Rows("deliveries", path)
    parsed = []
    for line, row in rows:
        try:
            at = _optional(row, "updated_at", datetime.fromisoformat) or now
            if at.tzinfo is None:
                at = at.replace(tzinfo=rules.zone)
            parsed.append((line, row["order_no"], row["status"], row["courier"] or None,
                           row["tracking_no"] or None, at))
        except (ValueError, DomainError) as exc:
            rows.error(line, str(exc))
    for line, order_no, status, courier, tracking_no, at in parsed:
        try:
            update_delivery(uow, rules, order_no, status, courier, tracking_no, at, commit=False)
        except DomainError as exc:
            rows.error(line, str(exc) if str(exc) != order_no else f"unknown order {order_no}")
    rows.raise_if_bad()
    _progress(progress, len(parsed), len(parsed))
    uow.commit()
    return ImportReport("deliveries", len(parsed), 0, len(parsed), 0)


IMPORTERS = {"members": import_members, "points": import_points, "rewards": import_rewards,
             "deliveries": import_deliveries}
