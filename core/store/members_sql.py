"""Members and their points: members, PINs, points lots, the ledger, lot draws, balances,
tier data, and the ledger's invariants."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, func, insert, or_, select, update

from core.config_values import POINTS_CEILING
from core.domain import LedgerEntry, LedgerProblem, LineStatus, Member, PointsLot
from core.store.repository import IN_BATCH
from core.store.retire_sql import RetiredAccounts
from core.store.sums import checked_points, out_of_range, points_sum
from core.store.tables import ledger, lot_draws, lots, members, rewards


class SqlMembers(RetiredAccounts):
    """Members, lots and ledger: the ``MembersRepository`` of ``core.ports``."""

    # --- members --------------------------------------------------------------------------

    def get_member(self, msisdn: str, *, for_update: bool = False,
                   include_closed: bool = False) -> Member | None:
        """The member on that number; a closed line is no member (None) unless
        ``include_closed`` (ops looking at an account, the imports)."""
        stmt = select(members).where(members.c.msisdn == msisdn)
        if not include_closed:
            stmt = stmt.where(members.c.line_status != LineStatus.CLOSED)
        row = self._first(stmt, for_update=for_update)
        return _member(row) if row else None

    def member_pin(self, msisdn: str) -> tuple[str | None, int]:
        row = self.conn.execute(
            select(members.c.pin_hash, members.c.pin_failures).where(members.c.msisdn == msisdn)
        ).first()
        return (row.pin_hash, row.pin_failures) if row else (None, 0)

    def upsert_members(self, rows: Sequence[dict[str, Any]], *,
                       existing: set[str] | None = None) -> tuple[int, int]:
        """Insert new members, update the given fields of existing ones. Returns (new, updated).
        ``existing``: the rows' numbers already stored, when the caller has just asked."""
        if existing is None:
            existing = self.existing_msisdns([r["msisdn"] for r in rows])
        defaults = dict(tier_valid_until=None, warning_opt_out=False, warning_channel="sms",
                        pin_hash=None, pin_failures=0, pin_locked_until=None,
                        granted_tier_code=None, granted_tier_until=None,
                        line_status=LineStatus.ACTIVE, subscriber_id=None,
                        delivery_address=None)
        new = [defaults | r for r in rows if r["msisdn"] not in existing]
        if new:
            self.conn.execute(insert(members), new)
        # One executemany per set of columns given, not one UPDATE per member.
        changes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in rows:
            if row["msisdn"] in existing:
                fields = {k: v for k, v in row.items() if k not in ("msisdn", "created_at")}
                changes.setdefault(tuple(sorted(fields)), []).append(
                    dict(fields, member_key=row["msisdn"]))
        for columns, params in changes.items():
            if columns:
                self.conn.execute(
                    update(members).where(members.c.msisdn == bindparam("member_key"))
                    .values({c: bindparam(c) for c in columns}), params)
        return len(new), sum(len(p) for p in changes.values())

    def subscriber_ids(self, msisdns: Iterable[str]) -> dict[str, str | None]:
        """Number -> stored subscriber id, for the stored members (closed lines too)."""
        found: dict[str, str | None] = {}
        batch = list(dict.fromkeys(msisdns))
        for i in range(0, len(batch), IN_BATCH):
            found.update((r.msisdn, r.subscriber_id) for r in self.conn.execute(
                select(members.c.msisdn, members.c.subscriber_id)
                .where(members.c.msisdn.in_(batch[i:i + IN_BATCH]))))
        return found

    def existing_msisdns(self, msisdns: Iterable[str]) -> set[str]:
        return self._existing(members.c.msisdn, msisdns)

    def update_member(self, msisdn: str, **fields: Any) -> None:
        self.conn.execute(update(members).where(members.c.msisdn == msisdn).values(**fields))

    def count_members(self) -> int:
        return self.conn.execute(select(func.count()).select_from(members)).scalar_one()

    def list_members(self, limit: int = 100) -> list[Member]:
        rows = self.conn.execute(select(members).order_by(members.c.msisdn).limit(limit))
        return [_member(r) for r in rows]

    # --- lots -----------------------------------------------------------------------------

    def spendable_lots(self, msisdn: str, now: datetime) -> list[PointsLot]:
        rows = self.conn.execute(
            select(lots)
            .where(lots.c.msisdn == msisdn, lots.c.remaining > 0, lots.c.expires_at > now)
            .order_by(lots.c.expires_at, lots.c.id)
        )
        found = [_lot(r) for r in rows]
        checked_points(msisdn, sum(lot.remaining for lot in found))  # nothing spent from junk
        return found

    def get_lots(self, lot_ids: Sequence[int]) -> list[PointsLot]:
        rows = self.conn.execute(select(lots).where(lots.c.id.in_(list(lot_ids))))
        return [_lot(r) for r in rows]

    def add_lot(self, *, msisdn: str, amount: int, source: str, earned_on: date,
                expires_at: datetime, reference: str | None, now: datetime) -> int:
        return self.conn.execute(
            insert(lots).returning(lots.c.id),
            dict(msisdn=msisdn, amount=amount, remaining=amount, source=source,
                 earned_on=earned_on, expires_at=expires_at, reference=reference,
                 expired=False, created_at=now),
        ).scalar_one()

    def add_lots_bulk(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert many lots (remaining = amount); no ids come back, which keeps it fast."""
        if rows:
            self.conn.execute(insert(lots), list(rows))

    def existing_references(self, references: Iterable[str]) -> set[str]:
        """References of imported rows already applied (credits and deductions alike)."""
        return self._existing(ledger.c.reference, references)

    def imported_points(self, references: Iterable[str]
                        ) -> dict[str, tuple[str, int, str, date | None]]:
        """What was stored under each imported reference: (msisdn, points, source, earned_on);
        a deduction has its (negative) points taken and no date."""
        found: dict[str, tuple[str, int, str, date | None]] = {}
        batch = list(references)
        for i in range(0, len(batch), IN_BATCH):
            for r in self.conn.execute(
                select(ledger.c.reference, ledger.c.msisdn, ledger.c.amount, ledger.c.reason,
                       lots.c.amount.label("lot_amount"), lots.c.source, lots.c.earned_on)
                .outerjoin(lots, lots.c.reference == ledger.c.reference)
                .where(ledger.c.reference.in_(batch[i:i + IN_BATCH]))
            ):
                found[r.reference] = (r.msisdn, r.lot_amount, r.source, r.earned_on) \
                    if r.lot_amount is not None else (r.msisdn, r.amount, r.reason, None)
        return found

    def take_from_lot(self, lot_id: int, points: int) -> None:
        """Move points out of (positive) or back into (negative) one lot, never below zero."""
        result = self.conn.execute(
            update(lots)
            .where(lots.c.id == lot_id, lots.c.remaining >= points,
                   lots.c.remaining - points <= lots.c.amount)
            .values(remaining=lots.c.remaining - points)
        )
        if result.rowcount != 1:
            raise RuntimeError(f"lot {lot_id} cannot move {points} points")

    def balance_summary(self, msisdn: str, now: datetime) -> tuple[int, datetime | None, int]:
        """(spendable points, soonest expiry instant, points expiring then), in one statement
        over the member's live lots (``ix_lots_member_live``)."""
        row = self.conn.execute(_balance_statement(self.is_sqlite),
                                dict(msisdn=msisdn, now=now)).one()
        total = checked_points(msisdn, row[0])
        return total, row[1], int(row[2]) if row[2] is not None else 0

    def earned_points(self, msisdn: str, since: date, sources: Sequence[str]) -> int:
        return checked_points(msisdn, self.conn.execute(
            select(points_sum(lots.c.amount, self.is_sqlite)).where(
                lots.c.msisdn == msisdn, lots.c.earned_on >= since,
                lots.c.source.in_(list(sources)))
        ).scalar_one())

    def lapsed_lots(self, now: datetime, limit: int) -> list[PointsLot]:
        """Lots past their expiry that still hold points and were not expired yet."""
        rows = self.conn.execute(
            self._lock(select(lots).where(
                lots.c.expires_at <= now, lots.c.expired.is_(False), lots.c.remaining > 0
            ).order_by(lots.c.msisdn, lots.c.id).limit(limit))
        )
        return [_lot(r) for r in rows]

    def mark_lots_expired(self, lot_ids: Sequence[int]) -> None:
        self.conn.execute(
            update(lots).where(lots.c.id.in_(list(lot_ids))).values(remaining=0, expired=True)
        )

    # --- ledger ---------------------------------------------------------------------------

    def add_ledger(self, *, msisdn: str, kind: str, amount: int, reason: str, channel: str,
                   now: datetime, order_no: str | None = None,
                   draws: Sequence[tuple[int, int]] = (), reference: str | None = None) -> int:
        ledger_id = self.conn.execute(
            insert(ledger).returning(ledger.c.id),
            dict(msisdn=msisdn, kind=kind, amount=amount, reason=reason, channel=channel,
                 order_no=order_no, reference=reference, created_at=now),
        ).scalar_one()
        if draws:
            self.conn.execute(insert(lot_draws), [
                dict(ledger_id=ledger_id, lot_id=lot_id, amount=points) for lot_id, points in draws
            ])
        return ledger_id

    def add_ledger_bulk(self, rows: Sequence[dict[str, Any]],
                        draws: Sequence[Sequence[tuple[int, int]]] | None = None) -> None:
        """Insert many ledger entries; ``draws`` (per entry) needs their ids, so only then
        are ids asked back."""
        if not rows:
            return
        if draws is None:
            self.conn.execute(insert(ledger), list(rows))
            return
        ids = list(self.conn.execute(
            insert(ledger).returning(ledger.c.id, sort_by_parameter_order=True), list(rows)
        ).scalars())
        draw_rows = [dict(ledger_id=lid, lot_id=lot_id, amount=points)
                     for lid, entry_draws in zip(ids, draws, strict=True)
                     for lot_id, points in entry_draws]
        if draw_rows:
            self.conn.execute(insert(lot_draws), draw_rows)

    def ledger_draws_for_order(self, order_no: str, kind: str) -> list[tuple[int, int]]:
        rows = self.conn.execute(
            select(lot_draws.c.lot_id, lot_draws.c.amount)
            .join(ledger, ledger.c.id == lot_draws.c.ledger_id)
            .where(ledger.c.order_no == order_no, ledger.c.kind == kind)
            .order_by(lot_draws.c.id)
        )
        return [(r.lot_id, r.amount) for r in rows]

    def history(self, msisdn: str, offset: int, limit: int) -> list[LedgerEntry]:
        rows = self.conn.execute(
            select(ledger).where(ledger.c.msisdn == msisdn)
            .order_by(ledger.c.created_at.desc(), ledger.c.id.desc()).offset(offset).limit(limit)
        )
        return [LedgerEntry(r.id, r.msisdn, r.kind, r.amount, r.reason, r.channel,
                            r.created_at, r.order_no) for r in rows]

    # --- invariants -----------------------------------------------------------------------

    def ledger_problems(self) -> list[LedgerProblem]:
        """Every member: ledger sum = lot remainders; every lot: draws explain what it lost."""
        problems: list[LedgerProblem] = []
        ledger_sum = select(ledger.c.msisdn,
                            points_sum(ledger.c.amount, self.is_sqlite).label("total")) \
            .group_by(ledger.c.msisdn).subquery()
        lot_sum = select(lots.c.msisdn, points_sum(lots.c.remaining, self.is_sqlite)
                         .label("total")).group_by(lots.c.msisdn).subquery()
        rows = self.conn.execute(
            select(members.c.msisdn, func.coalesce(ledger_sum.c.total, 0),
                   func.coalesce(lot_sum.c.total, 0))
            .outerjoin(ledger_sum, ledger_sum.c.msisdn == members.c.msisdn)
            .outerjoin(lot_sum, lot_sum.c.msisdn == members.c.msisdn)
            .where(func.coalesce(ledger_sum.c.total, 0) != func.coalesce(lot_sum.c.total, 0))
        )
        for msisdn, ledger_total, lot_total in rows:
            problems.append(LedgerProblem(
                msisdn, f"ledger sums to {int(ledger_total)} but lots hold {int(lot_total)}"))
        for msisdn, lot_total in self.conn.execute(select(lot_sum.c.msisdn, lot_sum.c.total)):
            if out_of_range(lot_total):
                problems.append(LedgerProblem(msisdn, f"lots hold {int(lot_total)} points, "
                                              "more than any balance can: account needs attention"))
        for row in self.conn.execute(select(lots.c.msisdn, lots.c.id).where(
                or_(lots.c.remaining < 0, lots.c.remaining > lots.c.amount,
                    lots.c.amount > POINTS_CEILING))):
            problems.append(LedgerProblem(row.msisdn, f"lot {row.id} remaining out of range"))
        drawn = select(lot_draws.c.lot_id, func.sum(lot_draws.c.amount).label("total")) \
            .group_by(lot_draws.c.lot_id).subquery()
        for row in self.conn.execute(
            select(lots.c.msisdn, lots.c.id, lots.c.amount, lots.c.remaining,
                   func.coalesce(drawn.c.total, 0).label("drawn"))
            .outerjoin(drawn, drawn.c.lot_id == lots.c.id)
            .where(lots.c.amount - lots.c.remaining != func.coalesce(drawn.c.total, 0))
        ):
            problems.append(LedgerProblem(
                row.msisdn, f"lot {row.id} lost {row.amount - row.remaining} points but its "
                f"draws say {row.drawn}"))
        for row in self.conn.execute(select(rewards.c.code).where(rewards.c.stock < 0)):
            problems.append(LedgerProblem(None, f"reward {row.code} stock below zero"))
        return problems


@lru_cache(maxsize=2)
def _balance_statement(is_sqlite: bool) -> Any:
    """``balance_summary``'s statement, built once per backend: building and cache-keying a
    new one per call cost about a third of a balance query's client CPU."""
    live = select(lots.c.expires_at, lots.c.remaining).where(
        lots.c.msisdn == bindparam("msisdn"), lots.c.remaining > 0,
        lots.c.expires_at > bindparam("now")).cte("live")
    soonest = select(func.min(live.c.expires_at)).scalar_subquery()
    return select(
        select(points_sum(live.c.remaining, is_sqlite)).scalar_subquery(),
        soonest,
        select(points_sum(live.c.remaining, is_sqlite))
        .where(live.c.expires_at == soonest).scalar_subquery(),
    )


def _member(row: Any) -> Member:
    return Member(row.msisdn, row.name, row.language, row.tier_code, row.tier_valid_until,
                  bool(row.warning_opt_out), row.warning_channel, row.pin_hash is not None,
                  row.pin_locked_until, row.created_at, row.granted_tier_code,
                  row.granted_tier_until, row.line_status, row.subscriber_id,
                  row.delivery_address)


def _lot(row: Any) -> PointsLot:
    return PointsLot(row.id, row.msisdn, row.amount, row.remaining, row.source, row.earned_on,
                     row.expires_at, row.reference)
