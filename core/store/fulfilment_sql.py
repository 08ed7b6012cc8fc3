"""The fulfilment queue: service and voucher orders waiting for the provisioning API.

The queue is the ``orders`` table itself (its ``fulfil_*`` columns), so an order's state and
its place in the queue change in one row, under one lock. Claims follow the outbox's pattern
(``core/store/messaging/outbox.py``): ``FOR UPDATE SKIP LOCKED`` on PostgreSQL so several
processes share the queue; SQLite's ``BEGIN IMMEDIATE`` serialises writers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, update

from core.domain import FULFILLED_KINDS, FulfilmentItem, OrderStatus
from core.store.repository import SqlRepository
from core.store.tables import orders

OPEN = (OrderStatus.CONFIRMED.value, OrderStatus.FULFILLING.value)


def _item(r: Any) -> FulfilmentItem:
    return FulfilmentItem(r.order_no, r.msisdn, r.reward_code, r.reward_kind, r.status,
                          r.created_at, r.fulfil_attempts, r.fulfil_due_at)


class SqlFulfilment(SqlRepository):
    """Implements ``core.ports.FulfilmentRepository``."""

    _columns = (orders.c.order_no, orders.c.msisdn, orders.c.reward_code, orders.c.reward_kind,
                orders.c.status, orders.c.created_at, orders.c.fulfil_attempts,
                orders.c.fulfil_due_at)

    def claim_fulfilments(self, now: datetime, until: datetime, limit: int
                          ) -> list[FulfilmentItem]:
        """Claim up to ``limit`` due orders (confirmed and due, or fulfilling with a lapsed
        lease): status fulfilling, claimed until ``until``, attempts + 1."""
        due = and_(orders.c.fulfil_due_at.is_not(None), or_(
            and_(orders.c.status == OrderStatus.CONFIRMED.value, orders.c.fulfil_due_at <= now),
            and_(orders.c.status == OrderStatus.FULFILLING.value,
                 orders.c.fulfil_claimed_until < now)))
        pick = select(orders.c.order_no).where(due).order_by(
            orders.c.fulfil_due_at, orders.c.order_no).limit(limit)
        if not self.is_sqlite:
            pick = pick.with_for_update(skip_locked=True)
        rows = self.conn.execute(
            update(orders).where(orders.c.order_no.in_(pick.scalar_subquery()))
            .values(status=OrderStatus.FULFILLING.value, fulfil_claimed_until=until,
                    fulfil_attempts=orders.c.fulfil_attempts + 1)
            .returning(*self._columns))
        return sorted((_item(r) for r in rows), key=lambda i: (i.due_at, i.order_no))

    def get_fulfilment(self, order_no: str, *, for_update: bool = False
                       ) -> FulfilmentItem | None:
        row = self._first(select(*self._columns).where(orders.c.order_no == order_no),
                          for_update=for_update)
        return _item(row) if row else None

    def retry_fulfilment(self, order_no: str, due_at: datetime, error: str) -> None:
        self.conn.execute(update(orders).where(orders.c.order_no == order_no).values(
            status=OrderStatus.CONFIRMED.value, fulfil_due_at=due_at,
            fulfil_claimed_until=None, fulfil_error=error[:200]))

    def finish_fulfilment(self, order_no: str, status: str, now: datetime, *,
                          reference: str | None = None, error: str | None = None) -> None:
        self.conn.execute(update(orders).where(orders.c.order_no == order_no).values(
            status=status, fulfil_claimed_until=None, fulfilled_at=now,
            fulfil_reference=reference and reference[:100], fulfil_error=error and error[:200]))

    def pending_fulfilments(self, limit: int = 100_000) -> list[FulfilmentItem]:
        """Queued orders not yet fulfilled or failed, oldest first (the CSV fallback)."""
        rows = self.conn.execute(select(*self._columns).where(
            orders.c.fulfil_due_at.is_not(None), orders.c.status.in_(OPEN),
            orders.c.reward_kind.in_(FULFILLED_KINDS))
            .order_by(orders.c.created_at, orders.c.order_no).limit(limit))
        return [_item(r) for r in rows]

    def fulfilment_outcome(self, order_no: str) -> tuple[str | None, str | None]:
        """(reference, error) stored on the order."""
        row = self.conn.execute(select(orders.c.fulfil_reference, orders.c.fulfil_error)
                                .where(orders.c.order_no == order_no)).first()
        return (row.fulfil_reference, row.fulfil_error) if row else (None, None)

    def fulfilment_queue(self) -> tuple[int, datetime | None]:
        """(orders waiting or in flight, the oldest one's order time)."""
        row = self.conn.execute(select(func.count(), func.min(orders.c.created_at)).where(
            orders.c.fulfil_due_at.is_not(None), orders.c.status.in_(OPEN))).one()
        return int(row[0]), row[1]
