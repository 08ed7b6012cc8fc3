"""A redemption in the store: the whole of it on PostgreSQL, and its atomic part
(``OrdersRepository.redeem_atomically``) two ways.

- PostgreSQL, the whole redemption (``redeem_request_on_server``): one call of
  ``loyalty_redeem`` (migration ``0011_pg_redeem_one_call``) checks, prices and spends:
  one round trip instead of four (member, reward, tier points, then the atomic part).
- PostgreSQL, the atomic part alone: one call of ``loyalty_redeem_atomic`` (migration
  ``0010_pg_redeem``, renamed by 0011): one round trip instead of a dozen, which is what
  bounds the redemption rate (each statement costs a round trip and the driver's time under
  the GIL).
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
    AddressNeeded,
    Delivery,
    InsufficientPoints,
    LimitReached,
    LineBarred,
    Order,
    OrderStatus,
    OutOfStock,
    RewardUnavailable,
    UnknownMember,
    UnknownReward,
)
from core.ports import AtomicRedemption, RedemptionRequest
from core.rules import plan_spend
from core.store.members_sql import SqlMembers
from core.store.sums import checked_points

if TYPE_CHECKING:
    from core.store.orders_sql import SqlOrders

REDEEM = text(
    "SELECT r_outcome, r_order_no, r_points FROM loyalty_redeem_atomic(CAST(:order AS jsonb), "
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


REDEEM_REQUEST = text(
    "SELECT r_outcome, r_detail, r_points, r_reward_code, r_kind, r_price, r_address "
    "FROM loyalty_redeem(CAST(:order AS jsonb), CAST(:code AS text), CAST(:today AS date), "
    "CAST(:prefix AS text), CAST(:barred AS text[]), CAST(:tiers AS text[]), "
    "CAST(:thresholds AS bigint[]), CAST(:since AS date), CAST(:sources AS text[]), "
    "CAST(:fulfilled AS text[]), CAST(:kind AS text), CAST(:reason AS text), "
    "CAST(:delivery AS text), CAST(:ceiling AS bigint))")


def redeem_request_on_server(orders: SqlOrders, request: RedemptionRequest) -> Order:
    """PostgreSQL: the whole of ``core.redemption.redeem`` in one call of ``loyalty_redeem``;
    the same refusals, raised as the use case raises them."""
    # The order's row, but for what the function fills in (the reward, its price, a gift's
    # address, the fulfilment queue, the number): every other column comes from here.
    template = Order("", request.number, "", "", 0, OrderStatus.CONFIRMED, request.channel,
                     request.request_id, request.now)
    row = orders.conn.execute(REDEEM_REQUEST, dict(
        order=json.dumps({k: _json_value(v) for k, v in order_values(template).items()}),
        code=request.reward_code.upper(), today=request.today,
        prefix=f"{request.today:%y%m%d}", barred=list(request.barred_lines),
        tiers=list(request.tier_codes), thresholds=list(request.tier_thresholds),
        since=request.qualifying_since, sources=list(request.qualifying_sources),
        fulfilled=list(FULFILLED_KINDS), kind=request.ledger_kind,
        reason=request.reason_prefix, delivery=request.gift_delivery_status,
        ceiling=POINTS_CEILING)).one()
    outcome, detail, points, reward_code, kind, price, address = row
    if outcome == "ok":
        order = replace(template, order_no=detail, reward_code=reward_code, reward_kind=kind,
                        points=price, delivery_address=address)
        if kind == "gift":
            order = replace(order, delivery=Delivery(detail, request.gift_delivery_status,
                                                     None, None, request.now))
        return order
    if outcome == "replay":
        existing = orders.get_order(detail)
        assert existing is not None  # found under the member's lock, in this transaction
        return existing
    code = request.reward_code
    refusals = {"unknown_member": lambda: UnknownMember(request.number),
                "barred": lambda: LineBarred(detail),
                "unknown_reward": lambda: UnknownReward(code),
                "address_needed": lambda: AddressNeeded(detail),
                "unavailable": lambda: RewardUnavailable(code),
                "out_of_stock": lambda: OutOfStock(code),
                "limit": lambda: LimitReached(code),
                "insufficient": lambda: InsufficientPoints(int(points), price),
                "sold_out": lambda: OutOfStock(reward_code),
                "limit_now": lambda: LimitReached(reward_code)}
    if outcome == "attention":
        checked_points(request.number, points)  # raises AccountNeedsAttention
    if outcome in refusals:
        raise refusals[outcome]()
    raise RuntimeError(f"loyalty_redeem answered {outcome!r}")


def redeem_on_server(orders: SqlOrders, redemption: AtomicRedemption) -> Order:
    """PostgreSQL: the atomic part in one call of ``loyalty_redeem_atomic``."""
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
