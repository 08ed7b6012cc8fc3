"""What the use cases need of the store about rewards and orders: the catalogue, stock,
orders, deliveries and redemption confirmations."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from core.domain import Confirmation, Delivery, Order, Reward


@dataclass(frozen=True)
class AtomicRedemption:
    """The part of a redemption that must happen at once, under the member's lock, once the
    use case has checked the reward and priced it: what ``redeem_atomically`` is given.

    ``order`` is the order to write (its ``order_no`` is left empty: the store numbers it
    ``order_prefix`` + a sequence of at least six digits); every field of it is stored, so a
    new order field needs only the store's column mapping."""

    order: Order
    order_prefix: str  # the programme day, yymmdd
    per_member_limit: int | None
    limited_stock: bool  # take one from stock (None in the catalogue: unlimited)
    ledger_kind: str
    ledger_reason: str
    delivery_status: str | None  # gifts start with a delivery in this state


@dataclass(frozen=True)
class RedemptionRequest:
    """A whole redemption as ``core.redemption.redeem`` is asked it, with the rules it needs
    (the tiers, the qualifying window, what bars a line): what ``redeem_request`` is given,
    so a store can check, price and spend in one call (PostgreSQL's ``loyalty_redeem``)."""

    msisdn: str  # as the caller gave it (refusals name it so)
    number: str  # normalised: the member's key
    reward_code: str  # as the caller gave it
    channel: str
    request_id: str
    now: datetime
    today: date  # the programme day of ``now``
    barred_lines: tuple[str, ...]  # line statuses that may not redeem
    tier_codes: tuple[str, ...]  # the programme's tiers, lowest first...
    tier_thresholds: tuple[int, ...]  # ...and the qualifying points each needs
    qualifying_since: date
    qualifying_sources: tuple[str, ...]
    ledger_kind: str
    reason_prefix: str  # the debit's reason: prefix + reward code
    gift_delivery_status: str  # a gift's delivery starts in this state


class OrdersRepository(Protocol):
    """The catalogue and its stock, orders, deliveries and confirmations."""

    def get_reward(self, code: str) -> Reward | None:
        ...

    def list_rewards(self, kind: str | None = None) -> list[Reward]:
        ...

    def upsert_reward(self, reward: Reward) -> bool:
        """Insert or replace one catalogue entry; True when it was new."""
        ...

    def take_stock(self, code: str) -> bool:
        """Take one item from stock; False when none is left. Unlimited stock always works."""
        ...

    def return_stock(self, code: str) -> None:
        ...

    def next_order_number(self, now: datetime) -> int:
        ...

    def redeem_atomically(self, redemption: AtomicRedemption) -> Order:
        """Lock the member, then: the member's order for the same (channel, request id) if
        there is one; else check the per-member limit (LimitReached), spend the price from
        the live lots, soonest expiry first, then oldest (InsufficientPoints,
        AccountNeedsAttention), take limited stock (OutOfStock), and write the order, the
        lots' debits, the ledger entry and its draws, and a gift's delivery. Returns the
        order as stored (with its delivery)."""
        ...

    def redeem_request(self, request: RedemptionRequest) -> Order | None:
        """The whole of ``core.redemption.redeem`` in one call, where the store can (the same
        checks, refusals, price and writes, in the same order); None where it cannot (the
        use case then runs its steps)."""
        ...

    def add_order(self, order: Order) -> None:
        ...

    def order_by_request(self, msisdn: str, channel: str, request_id: str) -> Order | None:
        """The member's order for this request, if any (another member's never matches)."""
        ...

    def get_order(self, order_no: str, *, for_update: bool = False) -> Order | None:
        ...

    def existing_order_numbers(self, order_numbers: Iterable[str]) -> set[str]:
        ...

    def set_order_cancelled(self, order_no: str, now: datetime) -> None:
        ...

    def count_orders(self, msisdn: str, reward_code: str) -> int:
        ...

    def member_orders(self, msisdn: str, limit: int, kind: str | None = None) -> list[Order]:
        ...

    def set_delivery(self, order_no: str, status: str, courier: str | None,
                     tracking_no: str | None, now: datetime) -> None:
        ...

    def delivery_history(self, order_no: str) -> list[Delivery]:
        ...

    def courier_names(self) -> list[str]:
        """Every distinct courier a delivery names now (as written, no empty ones)."""
        ...

    def add_confirmation(self, *, msisdn: str, code_hash: str, reward_code: str, price: int,
                         channel: str, now: datetime, expires_at: datetime) -> int:
        ...

    def open_confirmation(self, msisdn: str, code_hash: str, now: datetime) -> Confirmation | None:
        ...

    def used_confirmation(self, msisdn: str, code_hash: str) -> Confirmation | None:
        ...

    def use_confirmation(self, confirmation_id: int, now: datetime) -> None:
        ...
