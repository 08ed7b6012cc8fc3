"""The unit of work: one connection, one transaction, methods the use cases call.

Every method returns plain values or frozen domain records, never rows or ORM objects.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, case, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from core.config import POINTS_CEILING
from core.domain import (
    Confirmation,
    Delivery,
    LedgerEntry,
    LedgerProblem,
    Member,
    Order,
    PointsLot,
    Reward,
    Ticket,
)
from core.store.jobs_sql import JobsQueries
from core.store.messaging import SqlMessaging
from core.store.queues_sql import QueueQueries
from core.store.sums import checked_points, out_of_range, points_sum
from core.store.tables import (
    auto_redemptions,
    calls,
    confirmations,
    deliveries,
    delivery_events,
    ledger,
    lot_draws,
    lots,
    members,
    metadata,
    order_seq,
    orders,
    outbox,
    reward_prices,
    rewards,
    tickets,
)


class SqlUnitOfWork(JobsQueries, QueueQueries):
    def __init__(self, conn: Connection, *, is_sqlite: bool) -> None:
        self.conn = conn
        self.is_sqlite = is_sqlite
        self.messaging = SqlMessaging(conn, is_sqlite=is_sqlite)

    def commit(self) -> None:
        """For drivers that work in steps (one transaction per step); use cases never commit:
        the unit of work commits when they return."""
        self.conn.commit()

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        """A SAVEPOINT around the block: its writes stay in the transaction when it ends
        normally and are undone, alone, when it raises (the exception goes on)."""
        nested = self.conn.begin_nested()
        try:
            yield
        except BaseException:
            if nested.is_active:
                nested.rollback()
            raise
        nested.commit()

    def refresh_statistics(self, *tables: str) -> None:
        """Let PostgreSQL's planner see tables a bulk load just grew (it would otherwise scan
        a 'tiny' table on every lookup). SQLite plans these lookups by index anyway."""
        if not self.is_sqlite:
            for table in tables:
                self.conn.exec_driver_sql(f"ANALYZE {metadata.tables[table].name}")

    def stale_statistics(self, *tables: str) -> list[str]:
        """Those of ``tables`` changed by more than autovacuum's analyze threshold (50 rows +
        10 %) since their last ANALYZE (PostgreSQL; none on SQLite)."""
        if self.is_sqlite:
            return []
        names = {metadata.tables[t].name: t for t in tables}
        return sorted(names[r] for r, in self.conn.exec_driver_sql(
            "SELECT relname FROM pg_stat_user_tables WHERE schemaname = current_schema() "
            "AND relname = ANY(%(names)s) AND n_mod_since_analyze > 50 + 0.1 * n_live_tup",
            {"names": list(names)}))

    def autovacuum_on(self) -> bool:
        """Whether PostgreSQL's autovacuum runs (always True on SQLite, which has none)."""
        if self.is_sqlite:
            return True
        return self.conn.exec_driver_sql("SELECT current_setting('autovacuum')").scalar() == "on"

    def rollback(self) -> None:
        self.conn.rollback()

    def _lock(self, stmt):
        # SQLite serialises writers with BEGIN IMMEDIATE; PostgreSQL locks the rows.
        return stmt if self.is_sqlite else stmt.with_for_update()

    # --- members --------------------------------------------------------------------------

    def get_member(self, msisdn: str, *, for_update: bool = False) -> Member | None:
        stmt = select(members).where(members.c.msisdn == msisdn)
        row = self.conn.execute(self._lock(stmt) if for_update else stmt).first()
        return _member(row) if row else None

    def member_pin(self, msisdn: str) -> tuple[str | None, int]:
        row = self.conn.execute(
            select(members.c.pin_hash, members.c.pin_failures).where(members.c.msisdn == msisdn)
        ).first()
        return (row.pin_hash, row.pin_failures) if row else (None, 0)

    def upsert_members(self, rows: Sequence[dict[str, Any]]) -> tuple[int, int]:
        """Insert new members, update the given fields of existing ones. Returns (new, updated)."""
        existing = self.existing_msisdns([r["msisdn"] for r in rows])
        defaults = dict(tier_valid_until=None, warning_opt_out=False, warning_channel="sms",
                        pin_hash=None, pin_failures=0, pin_locked_until=None,
                        granted_tier_code=None, granted_tier_until=None)
        new = [defaults | r for r in rows if r["msisdn"] not in existing]
        if new:
            self.conn.execute(insert(members), new)
        updated = 0
        for row in rows:
            if row["msisdn"] in existing:
                fields = {k: v for k, v in row.items() if k not in ("msisdn", "created_at")}
                self.update_member(row["msisdn"], **fields)
                updated += 1
        return len(new), updated

    def existing_msisdns(self, msisdns: Iterable[str]) -> set[str]:
        found: set[str] = set()
        batch = list(dict.fromkeys(msisdns))
        for i in range(0, len(batch), 500):
            found.update(self.conn.execute(
                select(members.c.msisdn).where(members.c.msisdn.in_(batch[i:i + 500]))
            ).scalars())
        return found

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
        found: set[str] = set()
        batch = list(references)
        for i in range(0, len(batch), 500):
            found.update(self.conn.execute(
                select(ledger.c.reference).where(ledger.c.reference.in_(batch[i:i + 500]))
            ).scalars())
        return found

    def imported_points(self, references: Iterable[str]
                        ) -> dict[str, tuple[str, int, str, date | None]]:
        """What was stored under each imported reference: (msisdn, points, source, earned_on);
        a deduction has its (negative) points taken and no date."""
        found: dict[str, tuple[str, int, str, date | None]] = {}
        batch = list(references)
        for i in range(0, len(batch), 500):
            for r in self.conn.execute(
                select(ledger.c.reference, ledger.c.msisdn, ledger.c.amount, ledger.c.reason,
                       lots.c.amount.label("lot_amount"), lots.c.source, lots.c.earned_on)
                .outerjoin(lots, lots.c.reference == ledger.c.reference)
                .where(ledger.c.reference.in_(batch[i:i + 500]))
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
        """(spendable points, soonest expiry instant, points expiring then)."""
        live = and_(lots.c.msisdn == msisdn, lots.c.remaining > 0, lots.c.expires_at > now)
        total = checked_points(msisdn, self.conn.execute(
            select(points_sum(lots.c.remaining, self.is_sqlite)).where(live)).scalar_one())
        row = self.conn.execute(
            select(lots.c.expires_at, points_sum(lots.c.remaining, self.is_sqlite))
            .where(live).group_by(lots.c.expires_at).order_by(lots.c.expires_at).limit(1)
        ).first()
        return total, (row[0] if row else None), int(row[1]) if row else 0

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

    # --- rewards --------------------------------------------------------------------------

    def get_reward(self, code: str) -> Reward | None:
        row = self.conn.execute(select(rewards).where(rewards.c.code == code)).first()
        return self._rewards_with_prices([row])[0] if row else None

    def list_rewards(self, kind: str | None = None) -> list[Reward]:
        stmt = select(rewards).order_by(rewards.c.sort_order, rewards.c.code)
        if kind:
            stmt = stmt.where(rewards.c.kind == kind)
        return self._rewards_with_prices(list(self.conn.execute(stmt)))

    def _rewards_with_prices(self, rows) -> list[Reward]:
        prices: dict[str, list[tuple[str, int]]] = {}
        codes = [r.code for r in rows]
        if codes:
            for p in self.conn.execute(
                select(reward_prices).where(reward_prices.c.reward_code.in_(codes))
                .order_by(reward_prices.c.tier_code)
            ):
                prices.setdefault(p.reward_code, []).append((p.tier_code, p.points))
        return [Reward(r.code, r.name_zh, r.name_en, r.kind, r.points, r.stock,
                       r.available_from, r.available_until, r.per_member_limit, r.sort_order,
                       tuple(prices.get(r.code, ()))) for r in rows]

    def upsert_reward(self, reward: Reward) -> bool:
        """Insert or replace one catalogue entry; True when it was new."""
        values = dict(code=reward.code, name_zh=reward.name_zh, name_en=reward.name_en,
                      kind=reward.kind, points=reward.points, stock=reward.stock,
                      available_from=reward.available_from,
                      available_until=reward.available_until,
                      per_member_limit=reward.per_member_limit, sort_order=reward.sort_order)
        exists = self.conn.execute(
            select(rewards.c.code).where(rewards.c.code == reward.code)).first()
        if exists:
            self.conn.execute(update(rewards).where(rewards.c.code == reward.code).values(values))
        else:
            self.conn.execute(insert(rewards), values)
        self.conn.execute(reward_prices.delete().where(reward_prices.c.reward_code == reward.code))
        if reward.tier_prices:
            self.conn.execute(insert(reward_prices), [
                dict(reward_code=reward.code, tier_code=t, points=p) for t, p in reward.tier_prices
            ])
        return not exists

    def take_stock(self, code: str) -> bool:
        """Take one item from stock; False when none is left. Unlimited stock always works."""
        result = self.conn.execute(
            update(rewards).where(rewards.c.code == code,
                                  or_(rewards.c.stock.is_(None), rewards.c.stock > 0))
            .values(stock=case((rewards.c.stock.is_(None), None), else_=rewards.c.stock - 1))
        )
        return result.rowcount == 1

    def return_stock(self, code: str) -> None:
        self.conn.execute(
            update(rewards).where(rewards.c.code == code, rewards.c.stock.is_not(None))
            .values(stock=rewards.c.stock + 1)
        )

    # --- orders and deliveries ------------------------------------------------------------

    def next_order_number(self, now: datetime) -> int:
        return self.conn.execute(
            insert(order_seq).returning(order_seq.c.id), dict(created_at=now)
        ).scalar_one()

    def add_order(self, order: Order) -> None:
        self.conn.execute(insert(orders), dict(
            order_no=order.order_no, msisdn=order.msisdn, reward_code=order.reward_code,
            reward_kind=order.reward_kind, points=order.points, status=order.status,
            channel=order.channel, request_id=order.request_id, created_at=order.created_at))

    def order_by_request(self, msisdn: str, channel: str, request_id: str) -> Order | None:
        """The member's order for this request, if any (another member's never matches)."""
        row = self.conn.execute(select(orders).where(
            orders.c.msisdn == msisdn, orders.c.channel == channel,
            orders.c.request_id == request_id)).first()
        return self._order(row) if row else None

    def get_order(self, order_no: str, *, for_update: bool = False) -> Order | None:
        stmt = select(orders).where(orders.c.order_no == order_no)
        row = self.conn.execute(self._lock(stmt) if for_update else stmt).first()
        return self._order(row) if row else None

    def existing_order_numbers(self, order_numbers: Iterable[str]) -> set[str]:
        found: set[str] = set()
        batch = list(order_numbers)
        for i in range(0, len(batch), 500):
            found.update(self.conn.execute(
                select(orders.c.order_no).where(orders.c.order_no.in_(batch[i:i + 500]))
            ).scalars())
        return found

    def set_order_cancelled(self, order_no: str, now: datetime) -> None:
        self.conn.execute(update(orders).where(orders.c.order_no == order_no)
                          .values(status="cancelled", cancelled_at=now))

    def count_orders(self, msisdn: str, reward_code: str) -> int:
        return self.conn.execute(select(func.count()).select_from(orders).where(
            orders.c.msisdn == msisdn, orders.c.reward_code == reward_code,
            orders.c.status == "confirmed")).scalar_one()

    def member_orders(self, msisdn: str, limit: int, kind: str | None = None) -> list[Order]:
        stmt = select(orders).where(orders.c.msisdn == msisdn)
        if kind:
            stmt = stmt.where(orders.c.reward_kind == kind)
        rows = self.conn.execute(
            stmt.order_by(orders.c.created_at.desc(), orders.c.order_no.desc()).limit(limit))
        return [self._order(r) for r in rows]

    def _order(self, row) -> Order:
        d = self.conn.execute(
            select(deliveries).where(deliveries.c.order_no == row.order_no)).first()
        delivery = Delivery(d.order_no, d.status, d.courier, d.tracking_no, d.updated_at) \
            if d else None
        return Order(row.order_no, row.msisdn, row.reward_code, row.reward_kind, row.points,
                     row.status, row.channel, row.request_id, row.created_at, delivery)

    def set_delivery(self, order_no: str, status: str, courier: str | None,
                     tracking_no: str | None, now: datetime) -> None:
        exists = self.conn.execute(
            select(deliveries.c.order_no).where(deliveries.c.order_no == order_no)).first()
        values = dict(status=status, courier=courier, tracking_no=tracking_no, updated_at=now)
        if exists:
            self.conn.execute(
                update(deliveries).where(deliveries.c.order_no == order_no).values(values))
        else:
            self.conn.execute(insert(deliveries), dict(order_no=order_no, **values))
        self.conn.execute(insert(delivery_events), dict(
            order_no=order_no, status=status, courier=courier, tracking_no=tracking_no, at=now))

    def delivery_history(self, order_no: str) -> list[Delivery]:
        rows = self.conn.execute(select(delivery_events).where(
            delivery_events.c.order_no == order_no).order_by(delivery_events.c.id))
        return [Delivery(r.order_no, r.status, r.courier, r.tracking_no, r.at) for r in rows]

    # --- tickets, confirmations, outbox, calls --------------------------------------------

    def add_ticket(self, *, msisdn: str, kind: str, text: str, channel: str, now: datetime,
                   prefix: str, day: date) -> Ticket:
        ticket_id = self.conn.execute(insert(tickets).returning(tickets.c.id), dict(
            msisdn=msisdn, kind=kind, text=text, channel=channel, status="open",
            created_at=now)).scalar_one()
        ref = f"{prefix}{day:%y%m%d}{ticket_id:06d}"
        self.conn.execute(update(tickets).where(tickets.c.id == ticket_id).values(ref=ref))
        return Ticket(ref, msisdn, kind, text, channel, now)

    def add_confirmation(self, *, msisdn: str, code_hash: str, reward_code: str, price: int,
                         channel: str, now: datetime, expires_at: datetime) -> int:
        return self.conn.execute(insert(confirmations).returning(confirmations.c.id), dict(
            msisdn=msisdn, code_hash=code_hash, reward_code=reward_code, price=price,
            channel=channel, created_at=now, expires_at=expires_at)).scalar_one()

    def open_confirmation(self, msisdn: str, code_hash: str, now: datetime) -> Confirmation | None:
        row = self.conn.execute(select(confirmations).where(
            confirmations.c.msisdn == msisdn, confirmations.c.code_hash == code_hash,
            confirmations.c.used_at.is_(None), confirmations.c.expires_at > now,
        ).order_by(confirmations.c.id.desc()).limit(1)).first()
        return Confirmation(row.id, row.msisdn, row.reward_code, row.price, row.expires_at) \
            if row else None

    def used_confirmation(self, msisdn: str, code_hash: str) -> Confirmation | None:
        row = self.conn.execute(select(confirmations).where(
            confirmations.c.msisdn == msisdn, confirmations.c.code_hash == code_hash,
            confirmations.c.used_at.is_not(None)).order_by(confirmations.c.id.desc()).limit(1)
        ).first()
        return Confirmation(row.id, row.msisdn, row.reward_code, row.price, row.expires_at) \
            if row else None

    def use_confirmation(self, confirmation_id: int, now: datetime) -> None:
        self.conn.execute(update(confirmations).where(confirmations.c.id == confirmation_id)
                          .values(used_at=now))

    def queue_message(self, *, msisdn: str, language: str, kind: str, now: datetime,
                      template: str | None = None, params: dict[str, Any] | None = None,
                      body: str | None = None, dedupe_key: str | None = None,
                      not_before: datetime | None = None) -> int:
        if dedupe_key is not None:
            existing = self.conn.execute(
                select(outbox.c.id).where(outbox.c.dedupe_key == dedupe_key)).scalar()
            if existing is not None:
                return existing
        return self.conn.execute(insert(outbox).returning(outbox.c.id), dict(
            msisdn=msisdn, language=language, template=template,
            params=json.dumps(params or {}, ensure_ascii=False, default=str), body=body,
            kind=kind, dedupe_key=dedupe_key, state="queued", attempts=0,
            not_before=not_before or now, created_at=now)).scalar_one()

    def outbox_for(self, msisdn: str) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            select(outbox).where(outbox.c.msisdn == msisdn).order_by(outbox.c.id))
        return [dict(r._mapping) for r in rows]

    def record_call_start(self, *, uniqueid: str, msisdn_masked: str, script: str,
                          now: datetime) -> int:
        """A new call record; returns its id (uniqueids repeat, ids do not)."""
        return self.conn.execute(insert(calls).returning(calls.c.id), dict(
            uniqueid=uniqueid, msisdn_masked=msisdn_masked, script=script, started_at=now,
            menu_path="")).scalar_one()

    def record_call_end(self, *, uniqueid: str, menu_path: str, outcome: str,
                        now: datetime, call_id: int | None = None) -> None:
        """End the record ``call_id``; without it, the latest unended one for ``uniqueid``
        (never every call that shares the uniqueid)."""
        if call_id is None:
            call_id = self.conn.execute(select(func.max(calls.c.id)).where(
                calls.c.uniqueid == uniqueid, calls.c.ended_at.is_(None))).scalar()
        self.conn.execute(update(calls).where(calls.c.id == call_id).values(
            ended_at=now, menu_path=menu_path[:500], outcome=outcome))

    def auto_redemption_subscribe(self, msisdn: str, reward_code: str, active: bool,
                                  now: datetime) -> None:
        exists = self.conn.execute(select(auto_redemptions.c.id).where(
            auto_redemptions.c.msisdn == msisdn,
            auto_redemptions.c.reward_code == reward_code)).scalar()
        if exists:
            self.conn.execute(update(auto_redemptions).where(auto_redemptions.c.id == exists)
                              .values(active=active))
        else:
            self.conn.execute(insert(auto_redemptions), dict(
                msisdn=msisdn, reward_code=reward_code, active=active, created_at=now))

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


def _member(row) -> Member:
    return Member(row.msisdn, row.name, row.language, row.tier_code, row.tier_valid_until,
                  bool(row.warning_opt_out), row.warning_channel, row.pin_hash is not None,
                  row.pin_locked_until, row.created_at, row.granted_tier_code,
                  row.granted_tier_until)


def _lot(row) -> PointsLot:
    return PointsLot(row.id, row.msisdn, row.amount, row.remaining, row.source, row.earned_on,
                     row.expires_at, row.reference)
