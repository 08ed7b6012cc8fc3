"""Every SMS the programme sends, built in one place: domain results -> ``Message``.

A ``Message`` names its template (``sms/templates/<language>/<template>.j2``) and carries the
template's parameters: plain ints, strings, booleans, None, ISO dates and lists of dicts of
those, so that they can be stored as JSON in the outbox and rendered later. SMS replies, the
hotline's SMS copies and the jobs' notices all use these functions, so one fact has one
parameter name in every template (``balance`` is the balance now, ``balance_after`` what is
left after a redemption, ``reward_kind`` the kind of the reward redeemed...).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from core.catalogue_names import courier_names
from core.config import CourierConfig, TierConfig
from core.domain import (
    FULFILLED_KINDS,
    Balance,
    LedgerEntry,
    Order,
    PricedReward,
    Quote,
    Reward,
    Ticket,
    TierStatus,
    mask_address,
)


@dataclass(frozen=True)
class Message:
    template: str
    params: dict[str, Any] = field(default_factory=dict)


# Replies without parameters.
JOIN = Message("join")
RATE_LIMITED = Message("rate_limited")
SYSTEM_ERROR = Message("system_error")
UNAVAILABLE = Message("unavailable")
UNSUBSCRIBED = Message("unsubscribed")
RESUBSCRIBED = Message("resubscribed")
AUTO_USAGE = Message("auto_usage")
REDEEM_USAGE = Message("redeem_usage")


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day is not None else None


def date_params(day: date) -> dict[str, Any]:
    """A date as template parameters (templates format dates per language)."""
    return {"date": day.isoformat(), "year": day.year, "month": day.month, "day": day.day}


# --- answers to questions (SMS keywords and the hotline's SMS copies) ------------------------


def balance_message(points: int, expiring_points: int, expiry_date: date | None) -> Message:
    return Message("balance", {"points": points, "expiring_points": expiring_points,
                               "expiry_date": _iso(expiry_date)})


def balance_of(bal: Balance) -> Message:
    return balance_message(bal.points, bal.next_expiry_points, bal.next_expiry_date)


def tier_message(status: TierStatus, language: str) -> Message:
    zh = language == "zh"
    return Message("tier", {
        "tier_code": status.code, "tier_name": status.name_zh if zh else status.name_en,
        "valid_until": _iso(status.valid_until), "points_to_next": status.points_to_next,
        "next_tier_code": status.next_code,
        "next_tier_name": (status.next_name_zh if zh else status.next_name_en)
        if status.next_code else None})


def history_message(entries: Iterable[LedgerEntry], local_day: Callable[[datetime], date]
                    ) -> Message:
    """``local_day``: the programme's calendar day of an instant (``rules.today``)."""
    return Message("history", {"entries": [
        {"date": local_day(e.created_at).isoformat(), "kind": e.kind, "amount": e.amount,
         "reason": e.reason} for e in entries], "more": False})


def catalogue_message(priced: list[PricedReward], language: str, limit: int) -> Message:
    return Message("catalogue", {"rewards": [
        {"code": p.reward.code, "name": p.reward.name(language), "price": p.price,
         "in_stock": p.in_stock} for p in priced[:limit]], "more": len(priced) > limit})


def delivery_message(orders: Sequence[Order], reward_names: Mapping[str, str], language: str,
                     couriers: Iterable[CourierConfig] = ()) -> Message:
    """``reward_names``: reward code -> name in the member's language (the code if absent);
    each courier is named as ``[couriers]`` names it in ``language`` (else as stored)."""
    told = courier_names([o.delivery.courier for o in orders if o.delivery], couriers, language)
    return Message("delivery", {"orders": [
        {"order_no": o.order_no, "reward_code": o.reward_code,
         "reward_name": reward_names.get(o.reward_code, o.reward_code),
         "status": o.delivery.status if o.delivery else "pending",
         "courier": told.get(o.delivery.courier) if o.delivery else None,
         "tracking_no": o.delivery.tracking_no if o.delivery else None} for o in orders],
        "more": False})


def help_message(unrecognised: bool) -> Message:
    return Message("help", {"unrecognised": unrecognised})


# --- redemption ------------------------------------------------------------------------------


def redeem_quote_message(quote: Quote, otp: str, minutes: int, language: str) -> Message:
    return Message("redeem_quote", {
        "reward_code": quote.reward.code, "reward_name": quote.reward.name(language),
        "price": quote.price, "balance": quote.balance, "otp": otp, "minutes": minutes})


def redeem_done_message(order: Order, reward_name: str, balance_after: int) -> Message:
    """A gift's ``address`` is the order's copy, masked (an SMS can be read over a shoulder)."""
    return Message("redeem_done", {
        "order_no": order.order_no, "reward_code": order.reward_code,
        "reward_name": reward_name, "points": order.points, "balance_after": balance_after,
        "reward_kind": order.reward_kind,
        "address": mask_address(order.delivery_address) or None})


def line_barred_message(status: str) -> Message:
    """A suspended line or one in arrears asked to redeem: it may only ask for now."""
    return Message("line_barred", {"status": status})


def fulfil_done_message(order: Order, reward_name: str, reference: str | None) -> Message:
    """A service or voucher order the provisioning API (or the operator) has applied."""
    return Message("fulfil_done", {
        "order_no": order.order_no, "reward_code": order.reward_code,
        "reward_name": reward_name, "reward_kind": order.reward_kind,
        "reference": reference or ""})


def fulfil_failed_message(order: Order, reward_name: str, reason: str,
                          points_refunded: int) -> Message:
    """A service or voucher order that could not be applied and was refunded. ``reason``:
    ``refused`` (refused for good) or ``not_applied`` (the system kept failing)."""
    return Message("fulfil_failed", {
        "order_no": order.order_no, "reward_code": order.reward_code,
        "reward_name": reward_name, "reason": reason, "points_refunded": points_refunded})


def redeem_failed_message(reason: str, reward_code: str, *, balance: int | None = None,
                          price: int | None = None) -> Message:
    """``balance`` and ``price``: given when the reason is insufficient points."""
    params: dict[str, Any] = {"reason": reason, "reward_code": reward_code}
    if balance is not None:
        params.update(balance=balance, price=price)
    return Message("redeem_failed", params)


def confirm_failed_message(reason: str, *, tries_left: int = 0,
                           until: str | None = None) -> Message:
    """``until``: the local time (HH:MM) a PIN lock ends, when the reason is ``pin_locked``."""
    params: dict[str, Any] = {"reason": reason, "tries_left": tries_left}
    if until is not None:
        params["until"] = until
    return Message("confirm_failed", params)


def auto_redeem_done_message(reward: Reward | None, reward_code: str, language: str,
                             points: int, balance_after: int, order_no: str) -> Message:
    return Message("auto_redeem_done", {
        "reward_name": reward.name(language) if reward else reward_code, "points": points,
        "balance_after": balance_after, "order_no": order_no,
        # A service or voucher is applied afterwards (core.fulfilment): the notice says so.
        "being_applied": reward is not None and reward.kind in FULFILLED_KINDS})


def auto_redeem_short_message(reward: Reward | None, reward_code: str, language: str,
                              price: int, balance: int) -> Message:
    return Message("auto_redeem_short", {
        "reward_name": reward.name(language) if reward else reward_code, "price": price,
        "balance": balance})


def auto_signup_quote_message(reward: Reward | None, reward_code: str, otp: str, minutes: int,
                              language: str) -> Message:
    return Message("auto_signup_quote", {
        "reward_code": reward_code, "reward_name": reward.name(language) if reward else reward_code,
        "otp": otp, "minutes": minutes})


def auto_signup_done_message(reward: Reward | None, reward_code: str, language: str) -> Message:
    return Message("auto_signup_done", {
        "reward_code": reward_code,
        "reward_name": reward.name(language) if reward else reward_code})


def auto_cancelled_message(had_subscription: bool) -> Message:
    return Message("auto_cancelled", {"had_subscription": had_subscription})


# --- tickets, tiers, expiry --------------------------------------------------------------------


def ticket_message(kind: str, ref: str) -> Message:
    return Message("ticket", {"kind": kind, "ref": ref})


def ticket_usage_message(kind: str) -> Message:
    return Message("ticket_usage", {"kind": kind})


def ticket_status_message(ticket: Ticket) -> Message:
    """A ticket's status, as ``CX <ref>`` or the IVR's SMS copy gives it."""
    return Message("ticket_status", {
        "kind": ticket.kind, "ref": ticket.ref, "status": ticket.status,
        "outcome": ticket.outcome or "", "credit_points": ticket.credit_points or 0})


def ticket_unknown_message(ref: str) -> Message:
    """``CX`` with a reference that is none of the member's tickets (or no reference)."""
    return Message("ticket_unknown", {"ref": ref})


def ticket_resolved_message(kind: str, ref: str, outcome: str, credit: int | None) -> Message:
    return Message("ticket_resolved", {"kind": kind, "ref": ref, "outcome": outcome,
                                       "credit_points": credit or 0})


def tier_changed_message(old: TierConfig, new: TierConfig, up: bool, valid_until: date,
                         language: str) -> Message:
    zh = language == "zh"
    return Message("tier_changed", {
        "old_tier_name": old.name_zh if zh else old.name_en,
        "tier_name": new.name_zh if zh else new.name_en, "up": up,
        "valid_until": valid_until.isoformat()})


def expiry_warning_message(points: int, last_day: date, today: date, stage: str, *,
                           final: bool) -> Message:
    """The warning of ``stage`` (the final one, or an earlier one) for points whose last
    valid day is ``last_day``."""
    return Message("expiry_final_warning" if final else "expiry_warning", {
        "points": points, "stage": stage, "days_left": (last_day - today).days,
        **date_params(last_day)})


# --- rows queued before the names were settled -------------------------------------------------

# Outbox rows are rendered when sent; a row queued by an older release may carry a parameter
# under its old name. (old name, new name) per template.
_RENAMED = {
    "redeem_done": (("balance", "balance_after"), ("kind", "reward_kind")),
    "auto_redeem_done": (("balance", "balance_after"),),
}


def current_params(template: str, language: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` of a stored row under today's names (unchanged for a current row)."""
    out = dict(params)
    for old, new in _RENAMED.get(template, ()):
        if new not in out and old in out:
            out[new] = out.pop(old)
    if template == "redeem_done":
        out.setdefault("reward_name", out.get("reward_code", ""))
        out.setdefault("reward_kind", "")
        out.setdefault("balance_after", None)
        out.setdefault("address", None)
    elif template in ("auto_redeem_done", "auto_redeem_short") and "reward_name" not in out:
        out["reward_name"] = out.get(f"reward_{'zh' if language == 'zh' else 'en'}", "")
    if template == "auto_redeem_done":
        out.setdefault("being_applied", False)
    elif template == "tier_changed" and "tier_name" not in out:
        suffix = "zh" if language == "zh" else "en"
        out.update(old_tier_name=out.get(f"old_{suffix}", ""),
                   tier_name=out.get(f"new_{suffix}", ""),
                   valid_until=out.get("valid_date", ""))
    elif template in ("history", "catalogue", "delivery"):
        out.setdefault("more", False)
        for o in out.get("orders", ()):
            o.setdefault("reward_name", o.get("reward_code", ""))
    return out
