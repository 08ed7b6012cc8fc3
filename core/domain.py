"""Domain vocabulary: frozen records that cross the thread boundary, and domain errors.

Nothing here knows about Twisted or SQLAlchemy. Instants are aware UTC datetimes; calendar dates
are in the programme's time zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum


class Channel(StrEnum):
    IVR = "ivr"
    SMS = "sms"
    OPS = "ops"
    JOB = "job"
    IMPORT = "import"


class LedgerKind(StrEnum):
    CREDIT = "credit"
    DEBIT = "debit"
    EXPIRY = "expiry"
    ADJUSTMENT = "adjustment"
    PENALTY = "penalty"
    REFUND = "refund"


class RewardKind(StrEnum):
    SERVICE = "service"
    GIFT = "gift"
    VOUCHER = "voucher"


class LineStatus(StrEnum):
    """The operator's state of the member's line (``loyalty import line-status``)."""

    ACTIVE = "active"
    SUSPENDED = "suspended"  # may ask, may not redeem
    ARREARS = "arrears"  # may ask, may not redeem
    CLOSED = "closed"  # not a member on any channel


class OrderStatus(StrEnum):
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    # Service and voucher rewards are applied by the provisioning API (core.fulfilment):
    # confirmed -> fulfilling (claimed, a POST in flight) -> fulfilled | failed (refunded).
    FULFILLING = "fulfilling"
    FULFILLED = "fulfilled"
    FAILED = "failed"


# Rewards the provisioning API applies (gifts are shipped and tracked as deliveries instead).
FULFILLED_KINDS = ("service", "voucher")


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SHIPPED = "shipped"
    IN_TRANSIT = "in_transit"
    DELIVERED = "delivered"
    RETURNED = "returned"
    CANCELLED = "cancelled"


class TicketKind(StrEnum):
    MAKEUP = "makeup"
    COMPLAINT = "complaint"


# Where points come from. "makeup" is a granted make-up claim, "refund" a cancelled redemption
# whose original lots had expired.
POINT_SOURCES = ("bill", "tenure", "ontime", "partner", "reward", "makeup", "adjustment", "refund")
LANGUAGES = ("zh", "en")


@dataclass(frozen=True)
class Member:
    msisdn: str
    name: str
    language: str
    tier_code: str
    tier_valid_until: date | None
    warning_opt_out: bool
    warning_channel: str  # "sms" or "voice"
    has_pin: bool
    pin_locked_until: datetime | None
    created_at: datetime
    # A tier granted by ops (members import): the member holds at least this tier through
    # ``granted_tier_until``, whatever she earned.
    granted_tier_code: str | None = None
    granted_tier_until: date | None = None
    line_status: str = LineStatus.ACTIVE
    subscriber_id: str | None = None
    delivery_address: str | None = None


@dataclass(frozen=True)
class PointsLot:
    id: int
    msisdn: str
    amount: int
    remaining: int
    source: str
    earned_on: date
    # The first instant at which the points are gone (00:00:00 local after the last valid day).
    expires_at: datetime
    reference: str | None


@dataclass(frozen=True)
class LedgerEntry:
    id: int
    msisdn: str
    kind: str
    amount: int  # signed: credits positive, debits negative
    reason: str
    channel: str
    created_at: datetime
    order_no: str | None


@dataclass(frozen=True)
class Balance:
    msisdn: str
    points: int
    next_expiry_points: int
    next_expiry_date: date | None  # last valid day, programme time zone


@dataclass(frozen=True)
class TierStatus:
    msisdn: str
    code: str
    name_zh: str
    name_en: str
    valid_until: date | None
    qualifying_points: int
    priority: bool
    next_code: str | None
    next_name_zh: str | None
    next_name_en: str | None
    points_to_next: int  # 0 at the top tier


@dataclass(frozen=True)
class Reward:
    code: str
    name_zh: str
    name_en: str
    kind: str
    points: int  # base price; tiers without their own price pay this
    stock: int | None  # None: unlimited
    available_from: date | None
    available_until: date | None
    per_member_limit: int | None
    sort_order: int
    tier_prices: tuple[tuple[str, int], ...] = ()

    def price_for(self, tier_code: str) -> int:
        return dict(self.tier_prices).get(tier_code, self.points)

    def name(self, language: str) -> str:
        return self.name_zh if language == "zh" else self.name_en


@dataclass(frozen=True)
class PricedReward:
    reward: Reward
    price: int
    in_stock: bool


@dataclass(frozen=True)
class Quote:
    msisdn: str
    reward: Reward
    price: int
    balance: int

    @property
    def balance_after(self) -> int:
        return self.balance - self.price


@dataclass(frozen=True)
class Delivery:
    order_no: str
    status: str
    courier: str | None
    tracking_no: str | None
    updated_at: datetime


@dataclass(frozen=True)
class Order:
    order_no: str
    msisdn: str
    reward_code: str
    reward_kind: str
    points: int
    status: str
    channel: str
    request_id: str
    created_at: datetime
    delivery: Delivery | None = None
    delivery_address: str | None = None  # a gift's address, copied at redemption


@dataclass(frozen=True)
class FulfilmentItem:
    """A service or voucher order in the fulfilment queue, as the provisioning API is told."""
    order_no: str
    msisdn: str
    reward_code: str
    reward_kind: str
    status: str
    requested_at: datetime  # the order's instant (UTC)
    attempts: int  # POSTs started, this one included once claimed
    due_at: datetime | None
    quantity: int = 1  # no reward carries a quantity yet: one unit per order


@dataclass(frozen=True)
class Ticket:
    ref: str
    msisdn: str
    kind: str
    text: str
    channel: str
    created_at: datetime
    status: str = "open"
    recording_path: str | None = None
    order_no: str | None = None
    outcome: str | None = None
    credit_points: int | None = None
    resolved_at: datetime | None = None


# The confirmations row's channel for an automatic-redemption sign-up (not a redemption).
AUTO_SIGNUP = "auto-sms"


@dataclass(frozen=True)
class Confirmation:
    """A pending redemption waiting for the one-time code the subscriber was sent."""

    id: int
    msisdn: str
    reward_code: str
    price: int
    expires_at: datetime
    channel: str = ""  # AUTO_SIGNUP for a monthly automatic redemption sign-up


@dataclass(frozen=True)
class LedgerProblem:
    msisdn: str | None
    what: str


# --- errors ---------------------------------------------------------------------------------


class DomainError(Exception):
    """A rule said no. ``code`` is stable: channels map it to a prompt or a text."""

    code = "error"


class InvalidMsisdn(DomainError):
    code = "invalid_msisdn"


class UnknownMember(DomainError):
    code = "unknown_member"


class UnknownReward(DomainError):
    code = "unknown_reward"


class RewardUnavailable(DomainError):
    code = "unavailable"


class OutOfStock(DomainError):
    code = "out_of_stock"


class LimitReached(DomainError):
    code = "limit_reached"


class LineBarred(DomainError):
    """The member's line is suspended or in arrears: she may ask, not redeem."""

    code = "line_barred"

    def __init__(self, status: str) -> None:
        super().__init__(f"the line is {status}: no redemptions")
        self.status = status


class AddressNeeded(DomainError):
    """A gift is sent by post: the member has no delivery address registered."""

    code = "address_needed"


class InsufficientPoints(DomainError):
    code = "insufficient_points"

    def __init__(self, balance: int, price: int) -> None:
        super().__init__(f"balance {balance} is below the price {price}")
        self.balance = balance
        self.price = price


class PinNotSet(DomainError):
    code = "pin_not_set"


class PinLocked(DomainError):
    code = "pin_locked"

    def __init__(self, until: datetime) -> None:
        super().__init__(f"PIN locked until {until.isoformat()}")
        self.until = until


class WrongPin(DomainError):
    code = "wrong_pin"

    def __init__(self, tries_left: int) -> None:
        super().__init__(f"wrong PIN, {tries_left} tries left")
        self.tries_left = tries_left


class InvalidConfirmation(DomainError):
    code = "invalid_confirmation"

    def __init__(self, tries_left: int) -> None:
        super().__init__(f"no pending redemption has that code, {tries_left} tries left")
        self.tries_left = tries_left


@dataclass(frozen=True)
class SecretCheck:
    """The outcome of a service PIN or one-time code check. A wrong secret counts towards the
    lock and that count must be kept although the request fails, so it is returned (and
    committed with the unit of work) rather than raised."""

    member: Member | None = None  # the member, when the secret was right
    tries_left: int = 0  # wrong secret, not (yet) locked: tries before the lock
    locked_until: datetime | None = None  # locked (by this try or an earlier one)

    @property
    def accepted(self) -> bool:
        return self.member is not None


class UnknownOrder(DomainError):
    code = "unknown_order"


class OrderNotCancellable(DomainError):
    code = "not_cancellable"


class InvalidInput(DomainError):
    code = "invalid_input"


class UnknownTicket(DomainError):
    """No ticket has that reference (for a member: none of theirs has it)."""

    code = "unknown_ticket"


class TicketAlreadyResolved(DomainError):
    code = "ticket_resolved"


class AccountNeedsAttention(DomainError):
    """The member's stored points are out of any possible range (written by a broken upstream
    system): nothing is shown or spent until ops repair the account."""

    code = "account_needs_attention"

    def __init__(self, msisdn: str, what: str) -> None:
        super().__init__(f"account {mask_msisdn(msisdn)} needs attention: {what}")
        self.msisdn = msisdn
        self.what = what


# --- what logs and messages may show ----------------------------------------------------


def mask_msisdn(msisdn: str | None) -> str:
    """What logs may show of a number: the middle digits hidden (13812345678 -> 138****5678)."""
    if not msisdn:
        return "-"
    text = str(msisdn)
    if text == "unknown":  # what Asterisk gives for a withheld caller id
        return text
    if len(text) <= 4:
        return "*" * len(text)
    keep_head = 3 if len(text) >= 9 else 1
    keep_tail = 4 if len(text) >= 9 else 2
    return text[:keep_head] + "*" * (len(text) - keep_head - keep_tail) + text[-keep_tail:]


def mask_address(address: str | None) -> str:
    """What an SMS may show of a delivery address: the first and last few characters, the
    middle hidden, so the member recognises it and a stranger reading the phone learns little."""
    if not address:
        return ""
    text = " ".join(address.split())
    keep = max(1, min(6, len(text) // 4))
    if len(text) <= 2 * keep + 1:
        return text[:1] + "*" * (len(text) - 1)
    return text[:keep] + "*" * 4 + text[-keep:]
