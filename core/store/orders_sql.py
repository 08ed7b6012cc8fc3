"""Rewards and orders: the catalogue, stock, orders, deliveries and redemption confirmations."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, insert, or_, select, update

from core.domain import Confirmation, Delivery, Order, Reward
from core.ports import AtomicRedemption, RedemptionRequest
from core.store.redeem_sql import (
    order_values,
    redeem_in_steps,
    redeem_on_server,
    redeem_request_on_server,
)
from core.store.repository import SqlRepository
from core.store.tables import (
    confirmations,
    deliveries,
    delivery_events,
    order_seq,
    orders,
    reward_prices,
    rewards,
)


class SqlOrders(SqlRepository):
    """Catalogue, stock, orders, deliveries, confirmations: the ``OrdersRepository`` of
    ``core.ports``."""

    # --- rewards --------------------------------------------------------------------------

    def get_reward(self, code: str) -> Reward | None:
        # One statement with its tier prices: every redemption and quote reads a reward.
        rows = self.conn.execute(
            select(rewards, reward_prices.c.tier_code.label("price_tier"),
                   reward_prices.c.points.label("tier_points"))
            .outerjoin(reward_prices, reward_prices.c.reward_code == rewards.c.code)
            .where(rewards.c.code == code).order_by(reward_prices.c.tier_code)
        ).all()
        if not rows:
            return None
        return _reward(rows[0], [(r.price_tier, r.tier_points) for r in rows
                                 if r.price_tier is not None])

    def list_rewards(self, kind: str | None = None) -> list[Reward]:
        stmt = select(rewards).order_by(rewards.c.sort_order, rewards.c.code)
        if kind:
            stmt = stmt.where(rewards.c.kind == kind)
        return self._rewards_with_prices(list(self.conn.execute(stmt)))

    def _rewards_with_prices(self, rows: list[Any]) -> list[Reward]:
        prices: dict[str, list[tuple[str, int]]] = {}
        codes = [r.code for r in rows]
        if codes:
            for p in self.conn.execute(
                select(reward_prices).where(reward_prices.c.reward_code.in_(codes))
                .order_by(reward_prices.c.tier_code)
            ):
                prices.setdefault(p.reward_code, []).append((p.tier_code, p.points))
        return [_reward(r, prices.get(r.code, [])) for r in rows]

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
        self.conn.execute(insert(orders), order_values(order))

    def redeem_atomically(self, redemption: AtomicRedemption) -> Order:
        """See ``core.ports.OrdersRepository``: one round trip on PostgreSQL
        (``core.store.redeem_sql``)."""
        if self.is_sqlite:
            return redeem_in_steps(self, redemption)
        return redeem_on_server(self, redemption)

    def redeem_request(self, request: RedemptionRequest) -> Order | None:
        """See ``core.ports.OrdersRepository``: one round trip on PostgreSQL; None on SQLite
        (in-process, there are no round trips to save: the use case takes its steps)."""
        if self.is_sqlite:
            return None
        return redeem_request_on_server(self, request)

    def order_by_request(self, msisdn: str, channel: str, request_id: str) -> Order | None:
        """The member's order for this request, if any (another member's never matches)."""
        row = self.conn.execute(select(orders).where(
            orders.c.msisdn == msisdn, orders.c.channel == channel,
            orders.c.request_id == request_id)).first()
        return self._order(row) if row else None

    def get_order(self, order_no: str, *, for_update: bool = False) -> Order | None:
        row = self._first(select(orders).where(orders.c.order_no == order_no),
                          for_update=for_update)
        return self._order(row) if row else None

    def existing_order_numbers(self, order_numbers: Iterable[str]) -> set[str]:
        return self._existing(orders.c.order_no, order_numbers)

    def set_order_cancelled(self, order_no: str, now: datetime) -> None:
        self.conn.execute(update(orders).where(orders.c.order_no == order_no)
                          .values(status="cancelled", cancelled_at=now))

    def count_orders(self, msisdn: str, reward_code: str) -> int:
        return self.conn.execute(select(func.count()).select_from(orders).where(
            orders.c.msisdn == msisdn, orders.c.reward_code == reward_code,
            # An order counts until it is undone: cancelled, or failed (and so refunded).
            orders.c.status.not_in(("cancelled", "failed")))).scalar_one()

    def member_orders(self, msisdn: str, limit: int, kind: str | None = None) -> list[Order]:
        stmt = select(orders).where(orders.c.msisdn == msisdn)
        if kind:
            stmt = stmt.where(orders.c.reward_kind == kind)
        rows = self.conn.execute(
            stmt.order_by(orders.c.created_at.desc(), orders.c.order_no.desc()).limit(limit))
        return [self._order(r) for r in rows]

    def _order(self, row: Any) -> Order:
        d = self.conn.execute(
            select(deliveries).where(deliveries.c.order_no == row.order_no)).first()
        delivery = Delivery(d.order_no, d.status, d.courier, d.tracking_no, d.updated_at) \
            if d else None
        return Order(row.order_no, row.msisdn, row.reward_code, row.reward_kind, row.points,
                     row.status, row.channel, row.request_id, row.created_at, delivery,
                     row.delivery_address)

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

    def courier_names(self) -> list[str]:
        rows = self.conn.execute(select(deliveries.c.courier).where(
            deliveries.c.courier.is_not(None), deliveries.c.courier != "").distinct()
            .order_by(deliveries.c.courier))
        return [r.courier for r in rows]

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
        return _confirmation(row) if row else None

    def used_confirmation(self, msisdn: str, code_hash: str) -> Confirmation | None:
        row = self.conn.execute(select(confirmations).where(
            confirmations.c.msisdn == msisdn, confirmations.c.code_hash == code_hash,
            confirmations.c.used_at.is_not(None)).order_by(confirmations.c.id.desc()).limit(1)
        ).first()
        return _confirmation(row) if row else None

    def use_confirmation(self, confirmation_id: int, now: datetime) -> None:
        self.conn.execute(update(confirmations).where(confirmations.c.id == confirmation_id)
                          .values(used_at=now))


def _reward(row: Any, prices: list[tuple[str, int]]) -> Reward:
    return Reward(row.code, row.name_zh, row.name_en, row.kind, row.points, row.stock,
                  row.available_from, row.available_until, row.per_member_limit, row.sort_order,
                  tuple(prices))


def _confirmation(row: Any) -> Confirmation:
    return Confirmation(row.id, row.msisdn, row.reward_code, row.price, row.expires_at,
                        row.channel)
