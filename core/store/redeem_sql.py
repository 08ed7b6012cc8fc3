"""The atomic part of a redemption (``OrdersRepository.redeem_atomically``), two ways.

- PostgreSQL: one call of the server-side function ``loyalty_redeem`` (migration
  ``0010_pg_redeem``): one round trip instead of a dozen, which is what bounds the redemption
  rate (each statement costs a round trip and the driver's time under the GIL).
- SQLite (and the reference the PostgreSQL function is tested against): the same steps as
  single statements, in the same order.

Both lock the member first, answer a replay with the stored order, refuse before writing
anything (limit, account needing attention, insufficient points, out of stock), and spend by
``core.rules.plan_spend``'s order: soonest expiry, then oldest lot.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from core.config_values import POINTS_CEILING
from core.domain import (
    FULFILLED_KINDS,
    Delivery,
    InsufficientPoints,
    LimitReached,
    Order,
    OutOfStock,
    UnknownMember,
)
from core.ports import AtomicRedemption
from core.rules import plan_spend
from core.store.members_sql import SqlMembers
from core.store.sums import checked_points

if TYPE_CHECKING:
    from core.store.orders_sql import SqlOrders

REDEEM = text(
    "SELECT r_outcome, r_order_no, r_points FROM loyalty_redeem(CAST(:order AS jsonb), "
    "CAST(:prefix AS text), CAST(:limit AS integer), CAST(:limited AS boolean), "
    "CAST(:kind AS text), CAST(:reason AS text), CAST(:delivery AS text), "
    "CAST(:ceiling AS bigint))")


def order_values(order: Order) -> dict[str, Any]:
    """The ``orders`` row of an order, by column: the one mapping both paths store."""
    return dict(order_no=order.order_no, msisdn=order.msisdn, reward_code=order.reward_code,
                reward_kind=order.reward_kind, points=order.points, status=order.status,
                channel=order.channel, request_id=order.request_id,
                created_at=order.created_at, delivery_address=order.delivery_address,
                # A service or voucher is queued for the provisioning API as it is stored.
                fulfil_due_at=order.created_at if order.reward_kind in FULFILLED_KINDS
                else None, fulfil_attempts=0)


def _json_value(value: Any) -> Any:
    # As UTCDateTime stores instants: naive UTC.
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _stored(redemption: AtomicRedemption, order_no: str) -> Order:
    order = replace(redemption.order, order_no=order_no)
    if redemption.delivery_status is None:
        return order
    return replace(order, delivery=Delivery(order_no, redemption.delivery_status, None, None,
                                            order.created_at))


def redeem_on_server(orders: SqlOrders, redemption: AtomicRedemption) -> Order:
    """PostgreSQL: everything in one call of ``loyalty_redeem``."""
    order = redemption.order
    row = orders.conn.execute(REDEEM, dict(
        order=json.dumps({k: _json_value(v) for k, v in order_values(order).items()}),
        prefix=redemption.order_prefix, limit=redemption.per_member_limit,
        limited=redemption.limited_stock, kind=redemption.ledger_kind,
        reason=redemption.ledger_reason, delivery=redemption.delivery_status,
        ceiling=POINTS_CEILING)).one()
    outcome, order_no, points = row
    if outcome == "ok":
        return _stored(redemption, order_no)
    if outcome == "replay":
        existing = orders.order_by_request(order.msisdn, order.channel, order.request_id)
        assert existing is not None  # found under the member's lock, in this transaction
        return existing
    if outcome == "unknown_member":
        raise UnknownMember(order.msisdn)
    if outcome == "limit":
        raise LimitReached(order.reward_code)
    if outcome == "attention":
        checked_points(order.msisdn, points)  # raises AccountNeedsAttention
    if outcome == "insufficient":
        raise InsufficientPoints(int(points), order.points)
    if outcome == "out_of_stock":
        raise OutOfStock(order.reward_code)
    raise RuntimeError(f"loyalty_redeem answered {outcome!r}")


def redeem_in_steps(orders: SqlOrders, redemption: AtomicRedemption) -> Order:
    """Any backend: the same steps, one statement each (SQLite's path)."""
    members = SqlMembers(orders.conn, is_sqlite=orders.is_sqlite)
    order = redemption.order
    if members.get_member(order.msisdn, for_update=True) is None:
        raise UnknownMember(order.msisdn)
    existing = orders.order_by_request(order.msisdn, order.channel, order.request_id)
    if existing is not None:
        return existing
    if redemption.per_member_limit is not None and \
            orders.count_orders(order.msisdn, order.reward_code) >= redemption.per_member_limit:
        raise LimitReached(order.reward_code)
    plan = plan_spend(members.spendable_lots(order.msisdn, order.created_at), order.points,
                      order.created_at)
    if redemption.limited_stock and not orders.take_stock(order.reward_code):
        raise OutOfStock(order.reward_code)
    stored = _stored(redemption, f"{redemption.order_prefix}"
                                 f"{orders.next_order_number(order.created_at):06d}")
    orders.add_order(stored)
    for lot_id, take in plan:
        members.take_from_lot(lot_id, take)
    members.add_ledger(msisdn=order.msisdn, kind=redemption.ledger_kind, amount=-order.points,
                       reason=redemption.ledger_reason, channel=order.channel,
                       now=order.created_at, order_no=stored.order_no, draws=plan)
    if redemption.delivery_status is not None:
        orders.set_delivery(stored.order_no, redemption.delivery_status, None, None,
                            order.created_at)
    return stored
