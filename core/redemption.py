"""Use cases for spending points: catalogue, quote, redeem, cancel, one-time confirmations."""

from __future__ import annotations

import hashlib
import secrets
from datetime import date, datetime, timedelta

from core.accounts import (
    lock_in_force,
    member_tier,
    record_failed_secret,
    require_member,
    tier_status,
)
from core.domain import (
    AUTO_SIGNUP,
    Channel,
    Confirmation,
    DeliveryStatus,
    DomainError,
    InsufficientPoints,
    LedgerKind,
    LimitReached,
    Member,
    Order,
    OrderNotCancellable,
    OrderStatus,
    OutOfStock,
    PricedReward,
    Quote,
    Reward,
    RewardKind,
    RewardUnavailable,
    SecretCheck,
    UnknownOrder,
    UnknownReward,
)
from core.lines import BARRED, check_gift_address, check_may_redeem
from core.ports import AtomicRedemption, RedemptionRequest, UnitOfWork
from core.rules import ProgrammeRules, expiry_for, qualifying_window_start

CANCELLABLE_DELIVERY = (None, DeliveryStatus.PENDING)


def is_available(reward: Reward, today) -> bool:
    return (reward.available_from is None or reward.available_from <= today) and (
        reward.available_until is None or today <= reward.available_until)


def catalogue(uow: UnitOfWork, rules: ProgrammeRules, msisdn: str, now: datetime, *,
              kind: str | None = None) -> list[PricedReward]:
    """What the member can see today, in catalogue order, priced for the member's tier."""
    tier = tier_status(uow, rules, msisdn, now).code
    return priced_catalogue(uow.orders.list_rewards(kind), tier, rules.today(now))


def priced_catalogue(rewards: list[Reward], tier_code: str, today: date) -> list[PricedReward]:
    """``rewards`` (in catalogue order) available ``today``, priced for ``tier_code``: pure,
    so the SMS channel prices one catalogue read for a whole batch."""
    return [PricedReward(r, r.price_for(tier_code), r.stock is None or r.stock > 0)
            for r in rewards if is_available(r, today)]


def _check_redeemable(uow: UnitOfWork, rules: ProgrammeRules, member: Member, code: str,
                      now: datetime) -> tuple[Reward, int]:
    """The reward and the member's price for it, if the member may redeem it now."""
    reward = uow.orders.get_reward(code.upper())
    if reward is None:
        raise UnknownReward(code)
    check_gift_address(member, reward)
    if not is_available(reward, rules.today(now)):
        raise RewardUnavailable(code)
    if reward.stock is not None and reward.stock <= 0:
        raise OutOfStock(code)
    if reward.per_member_limit is not None and \
            uow.orders.count_orders(member.msisdn, reward.code) >= reward.per_member_limit:
        raise LimitReached(code)
    return reward, reward.price_for(member_tier(uow, rules, member, now).code)


def quote_redemption(uow: UnitOfWork, rules: ProgrammeRules, msisdn: str, reward_code: str,
                     now: datetime) -> Quote:
    """Everything a redemption would check, without spending: for read-backs and SMS replies."""
    member = require_member(uow, rules, msisdn)
    check_may_redeem(member)
    reward, price = _check_redeemable(uow, rules, member, reward_code, now)
    points, _, _ = uow.members.balance_summary(member.msisdn, now)
    if points < price:
        raise InsufficientPoints(points, price)
    return Quote(member.msisdn, reward, price, points)


def redeem(uow: UnitOfWork, rules: ProgrammeRules, msisdn: str, reward_code: str, channel: str,
           request_id: str, now: datetime) -> Order:
    """Spend points on a reward, atomically and at most once per (member, channel,
    request_id): the member's own request replayed returns the same order; the same request
    id from another member is that member's own request, never a match.

    The rules are checked here; the spending is one store call (``redeem_atomically``) that
    locks the member's row first and checks the replay, the limit, the balance and the stock
    again under that lock, so concurrent redemptions for one member (from any channel or
    process) run one after the other and cannot overspend.

    Where the store can do all of this in one call (PostgreSQL: ``loyalty_redeem``), it
    does: the same checks in the same order, under the member's lock from the start.
    """
    whole = uow.orders.redeem_request(redemption_request(rules, msisdn, reward_code, channel,
                                                         request_id, now))
    if whole is not None:
        return whole
    # 1. The checks: reads, no lock held yet. A replay is looked for only when they refuse
    # (the reward may be gone since); otherwise the atomic part finds it, under the lock.
    member = require_member(uow, rules, msisdn)
    check_may_redeem(member)
    try:
        reward, price = _check_redeemable(uow, rules, member, reward_code, now)
    except DomainError:
        existing = uow.orders.order_by_request(member.msisdn, channel, request_id)
        if existing is not None:
            return existing
        raise
    # 2. The atomic part, under the member's lock: one round trip on PostgreSQL. A service or
    # voucher order is stored already queued for the provisioning API (core.fulfilment).
    today = rules.today(now)
    gift = reward.kind == RewardKind.GIFT
    order = Order(
        order_no="", msisdn=member.msisdn, reward_code=reward.code, reward_kind=reward.kind,
        points=price, status=OrderStatus.CONFIRMED, channel=channel, request_id=request_id,
        created_at=now, delivery_address=member.delivery_address if gift else None)
    return uow.orders.redeem_atomically(AtomicRedemption(
        order=order, order_prefix=f"{today:%y%m%d}", per_member_limit=reward.per_member_limit,
        limited_stock=reward.stock is not None, ledger_kind=LedgerKind.DEBIT,
        ledger_reason=f"redeem {reward.code}",
        delivery_status=DeliveryStatus.PENDING if gift else None))


def redemption_request(rules: ProgrammeRules, msisdn: str, reward_code: str, channel: str,
                       request_id: str, now: datetime) -> RedemptionRequest:
    """``redeem``'s question with the rules it needs, for a store that answers it in one call
    (``core.accounts.tier_of`` says how the tiers and the qualifying points set the price)."""
    today = rules.today(now)
    return RedemptionRequest(
        msisdn=msisdn, number=rules.numbering.normalise(msisdn), reward_code=reward_code,
        channel=channel, request_id=request_id, now=now, today=today,
        barred_lines=tuple(BARRED), tier_codes=tuple(t.code for t in rules.tiers),
        tier_thresholds=tuple(t.threshold for t in rules.tiers),
        qualifying_since=qualifying_window_start(today),
        qualifying_sources=tuple(rules.programme.qualifying_sources),
        ledger_kind=LedgerKind.DEBIT, reason_prefix="redeem ",
        gift_delivery_status=DeliveryStatus.PENDING)


def cancel_order(uow: UnitOfWork, rules: ProgrammeRules, order_no: str, now: datetime, *,
                 channel: str = Channel.OPS) -> Order:
    """Refund a redemption to the lots it drew from (fresh lots for those since expired)."""
    order = uow.orders.get_order(order_no, for_update=True)
    if order is None:
        raise UnknownOrder(order_no)
    require_member(uow, rules, order.msisdn, for_update=True)
    if order.status != OrderStatus.CONFIRMED:
        raise OrderNotCancellable(f"order {order_no} is {order.status}")
    delivery = order.delivery.status if order.delivery else None
    if delivery not in CANCELLABLE_DELIVERY:
        raise OrderNotCancellable(f"order {order_no} is already {delivery}")
    refund_order(uow, rules, order, now, channel=channel, reason=f"cancel {order.reward_code}")
    uow.orders.set_order_cancelled(order_no, now)
    if order.delivery is not None:
        uow.orders.set_delivery(order_no, DeliveryStatus.CANCELLED, order.delivery.courier,
                                order.delivery.tracking_no, now)
    return uow.orders.get_order(order_no)


def refund_order(uow: UnitOfWork, rules: ProgrammeRules, order: Order, now: datetime, *,
                 channel: str, reason: str) -> int:
    """Give an order's points back to the lots it drew from (a fresh lot for each since
    expired, or nothing for it under ``refund_expired_lots = "forfeit"``) and return its
    stock; the points refunded. The caller holds the order's and the member's row locks and
    has checked the order's state, so a refund happens once."""
    draws = uow.members.ledger_draws_for_order(order.order_no, LedgerKind.DEBIT)
    lots = {lot.id: lot for lot in uow.members.get_lots([lot_id for lot_id, _ in draws])}
    refund_draws: list[tuple[int, int]] = []
    refunded = 0
    for lot_id, points in draws:
        lot = lots[lot_id]
        if lot.expires_at > now:
            uow.members.take_from_lot(lot_id, -points)
            refund_draws.append((lot_id, -points))
            refunded += points
        elif rules.programme.refund_expired_lots == "fresh":
            fresh = uow.members.add_lot(msisdn=order.msisdn, amount=points, source="refund",
                                        earned_on=rules.today(now),
                                        expires_at=expiry_for(rules.today(now), rules.programme),
                                        reference=None, now=now)
            # The fresh lot starts full; the refund entry accounts for it.
            refunded += points
            refund_draws.append((fresh, 0))
    if refunded:
        uow.members.add_ledger(msisdn=order.msisdn, kind=LedgerKind.REFUND, amount=refunded,
                               reason=reason, channel=channel, now=now,
                               order_no=order.order_no, draws=refund_draws)
    uow.orders.return_stock(order.reward_code)
    return refunded


def gift_orders(uow: UnitOfWork, rules: ProgrammeRules, msisdn: str, now: datetime, *,
                limit: int = 3) -> list[Order]:
    member = require_member(uow, rules, msisdn)
    return uow.orders.member_orders(member.msisdn, limit, kind=RewardKind.GIFT)


def recent_orders(uow: UnitOfWork, rules: ProgrammeRules, msisdn: str, *,
                  limit: int = 10) -> list[Order]:
    return uow.orders.member_orders(rules.numbering.normalise(msisdn), limit)


# --- one-time confirmation codes (SMS) ------------------------------------------------------


def _code_hash(msisdn: str, code: str) -> str:
    return hashlib.sha256(f"{msisdn}:{code}".encode()).hexdigest()


def find_confirmation(uow: UnitOfWork, member: Member, code: str, now: datetime
                      ) -> tuple[SecretCheck | None, Confirmation | None, Confirmation | None]:
    """What a one-time code names for a member whose row is locked: (the PIN lock in force,
    else None; the open confirmation with that code; else the used one with it)."""
    locked = lock_in_force(member, now)
    if locked is not None:
        return locked, None, None
    digest = _code_hash(member.msisdn, code)
    pending = uow.orders.open_confirmation(member.msisdn, digest, now)
    used = uow.orders.used_confirmation(member.msisdn, digest) if pending is None else None
    return None, pending, used


def start_confirmation(uow: UnitOfWork, rules: ProgrammeRules, msisdn: str, reward_code: str,
                       channel: str, now: datetime) -> tuple[Quote, str, datetime]:
    """Quote a redemption and issue the 6-digit code that confirms it. Returns
    (quote, code, expiry instant); only a hash of the code is stored."""
    quote = quote_redemption(uow, rules, msisdn, reward_code, now)
    code = f"{secrets.randbelow(1_000_000):06d}"
    expires_at = now + timedelta(minutes=rules.programme.confirmation_code_minutes)
    uow.orders.add_confirmation(msisdn=quote.msisdn, code_hash=_code_hash(quote.msisdn, code),
                                reward_code=quote.reward.code, price=quote.price, channel=channel,
                                now=now, expires_at=expires_at)
    return quote, code, expires_at


def confirm_redemption(uow: UnitOfWork, rules: ProgrammeRules, msisdn: str, code: str, channel: str,
                       now: datetime) -> Order | SecretCheck:
    """Redeem what the code was issued for. The same code sent again returns the same order.
    A wrong code counts toward the PIN lock, like a wrong PIN: it returns the refusal (a
    ``SecretCheck``), so the count is committed although nothing is redeemed."""
    member = require_member(uow, rules, msisdn, for_update=True)
    return redeem_confirmed(uow, rules, member, find_confirmation(uow, member, code, now),
                            channel, now)


Found = tuple[SecretCheck | None, Confirmation | None, Confirmation | None]


def redeem_confirmed(uow: UnitOfWork, rules: ProgrammeRules, member: Member, found: Found,
                     channel: str, now: datetime) -> Order | SecretCheck:
    """``confirm_redemption`` for a member whose row is locked and whose code was looked up
    (``find_confirmation``), so an SMS code that may be a sign-up's is looked up once."""
    check_may_redeem(member)
    locked, pending, used = found
    if locked is not None:
        return locked
    if pending is not None and pending.channel == AUTO_SIGNUP:
        pending = None  # a sign-up's code never spends points (core.preferences takes it)
    if pending is None:
        if used is not None:
            order = uow.orders.order_by_request(member.msisdn, channel, f"confirm:{used.id}")
            if order is not None:
                return order
        _, failures = uow.members.member_pin(member.msisdn)
        return record_failed_secret(uow, rules, member.msisdn, failures, now)
    uow.orders.use_confirmation(pending.id, now)
    return redeem(uow, rules, member.msisdn, pending.reward_code, channel,
                  f"confirm:{pending.id}", now)
