"""One MO message's keyword -> the core use case -> the reply ``Message`` (database thread)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from core import messages
from core.accounts import balance, history, set_warning_preferences, tier_status
from core.domain import (
    Channel,
    DomainError,
    InsufficientPoints,
    InvalidConfirmation,
    LineBarred,
    PinLocked,
    SecretCheck,
    TicketKind,
    UnknownTicket,
    mask_msisdn,
)
from core.messages import Message
from core.messaging import keywords as kw
from core.messaging.reading import batched_answer
from core.preferences import cancel_auto_redemption, confirm_code, start_auto_signup
from core.redemption import catalogue, gift_orders, start_confirmation
from core.service_desk import record_ticket
from core.tickets import ticket_status

if TYPE_CHECKING:  # core.messaging.handling imports this module
    from core.messaging.handling import HandlerSettings, Work

# The keywords whose use case writes: each is handled in its own transaction.
WRITERS = (kw.REDEEM, kw.CONFIRM, kw.MAKEUP, kw.COMPLAINT, kw.STOP, kw.RESUME, kw.AUTO_REDEEM,
           kw.AUTO_CANCEL)


def dispatch(uow, rules, work: Work, cmd: kw.Command, msisdn: str, lang: str) -> Message:
    if cmd.kind not in WRITERS:
        try:
            return _read(uow, rules, work, cmd, msisdn, lang)
        except DomainError as exc:
            work.problems.append(f"SMS {cmd.kind} for {mask_msisdn(msisdn)}: {exc!r}")
            return messages.SYSTEM_ERROR
    try:
        with uow.savepoint():
            return _write(uow, rules, work, cmd, msisdn, lang)
    except DomainError as exc:
        return _domain_reply(rules, work, cmd, exc, msisdn)


def _read(uow, rules, work: Work, cmd: kw.Command, msisdn: str, lang: str) -> Message:
    now, s = work.now, work.settings
    batched = batched_answer(work.reads, rules, cmd, msisdn, lang, now, s.catalogue_entries)
    if batched is not None:
        return batched
    return answer_alone(uow, rules, cmd, msisdn, lang, now, s)


def answer_alone(uow, rules, cmd: kw.Command, msisdn: str, lang: str, now: datetime,
                 s: HandlerSettings) -> Message:
    """A read-only keyword answered by the per-member use cases (what the batched reads of
    ``core.messaging.reading`` must equal)."""
    if cmd.kind == kw.BALANCE:
        return messages.balance_of(balance(uow, rules, msisdn, now))
    if cmd.kind == kw.TIER:
        return messages.tier_message(tier_status(uow, rules, msisdn, now), lang)
    if cmd.kind == kw.HISTORY:
        return messages.history_message(
            history(uow, rules, msisdn, now, limit=s.history_entries), rules.today)
    if cmd.kind == kw.CATALOGUE:
        return messages.catalogue_message(catalogue(uow, rules, msisdn, now), lang,
                                          s.catalogue_entries)
    if cmd.kind == kw.DELIVERY:
        orders = gift_orders(uow, rules, msisdn, now, limit=s.delivery_orders)
        names = {}
        for o in orders:
            if o.reward_code not in names:
                r = uow.orders.get_reward(o.reward_code)
                names[o.reward_code] = r.name(lang) if r else o.reward_code
        return messages.delivery_message(orders, names, lang, rules.couriers)
    if cmd.kind == kw.TICKET_STATUS:
        try:
            return messages.ticket_status_message(ticket_status(uow, rules, msisdn, cmd.arg))
        except UnknownTicket:
            return messages.ticket_unknown_message(cmd.arg)
    return messages.help_message(cmd.kind == kw.UNKNOWN)


def _write(uow, rules, work: Work, cmd: kw.Command, msisdn: str, lang: str) -> Message:
    now = work.now
    if cmd.kind == kw.REDEEM:
        if not cmd.arg:
            return messages.REDEEM_USAGE
        quote, code, expires_at = start_confirmation(uow, rules, msisdn, cmd.arg, Channel.SMS,
                                                     now)
        minutes = max(1, round((expires_at - now).total_seconds() / 60))
        return messages.redeem_quote_message(quote, code, minutes, lang)
    if cmd.kind == kw.CONFIRM:
        if not cmd.arg:
            return messages.confirm_failed_message("no_code")
        order = confirm_code(uow, rules, msisdn, cmd.arg, Channel.SMS, now)
        if isinstance(order, str):  # a monthly automatic redemption's sign-up
            return messages.auto_signup_done_message(uow.orders.get_reward(order), order,
                                                     lang)
        if isinstance(order, SecretCheck):  # refused; its failure count is kept
            refusal = (PinLocked(order.locked_until) if order.locked_until is not None
                       else InvalidConfirmation(order.tries_left))
            return _domain_reply(rules, work, cmd, refusal, msisdn)
        if order.created_at == now:
            work.redemptions += 1
        reward = uow.orders.get_reward(order.reward_code)
        return messages.redeem_done_message(
            order, reward.name(lang) if reward else order.reward_code,
            balance(uow, rules, msisdn, now).points)
    if cmd.kind in (kw.MAKEUP, kw.COMPLAINT):
        kind = TicketKind.MAKEUP if cmd.kind == kw.MAKEUP else TicketKind.COMPLAINT
        if not cmd.arg:
            return messages.ticket_usage_message(str(kind))
        ticket = record_ticket(uow, rules, msisdn, kind, cmd.arg, Channel.SMS, now)
        return messages.ticket_message(str(kind), ticket.ref)
    if cmd.kind == kw.STOP:
        set_warning_preferences(uow, rules, msisdn, now, opt_out=True)
        return messages.UNSUBSCRIBED
    if cmd.kind == kw.RESUME:
        set_warning_preferences(uow, rules, msisdn, now, opt_out=False)
        return messages.RESUBSCRIBED
    if cmd.kind == kw.AUTO_REDEEM:
        if not cmd.arg:
            return messages.AUTO_USAGE
        code, otp, expires_at = start_auto_signup(uow, rules, msisdn, cmd.arg, now)
        minutes = max(1, round((expires_at - now).total_seconds() / 60))
        return messages.auto_signup_quote_message(uow.orders.get_reward(code), code, otp,
                                                  minutes, lang)
    if cmd.kind == kw.AUTO_CANCEL:
        return messages.auto_cancelled_message(cancel_auto_redemption(uow, rules, msisdn, now))
    raise AssertionError(cmd.kind)  # pragma: no cover


def _domain_reply(rules, work: Work, cmd: kw.Command, exc: DomainError,
                  msisdn: str) -> Message:
    if isinstance(exc, InvalidConfirmation):
        return messages.confirm_failed_message(exc.code, tries_left=exc.tries_left)
    if isinstance(exc, PinLocked):
        until = exc.until.astimezone(rules.zone)
        return messages.confirm_failed_message(exc.code, until=f"{until:%H:%M}")
    if isinstance(exc, LineBarred):  # the line may ask, not redeem
        return messages.line_barred_message(exc.status)
    if cmd.kind in (kw.REDEEM, kw.CONFIRM, kw.AUTO_REDEEM):
        code = cmd.arg if cmd.kind in (kw.REDEEM, kw.AUTO_REDEEM) else ""
        if isinstance(exc, InsufficientPoints):
            return messages.redeem_failed_message(exc.code, code, balance=exc.balance,
                                                  price=exc.price)
        return messages.redeem_failed_message(exc.code, code)
    work.problems.append(f"SMS {cmd.kind} for {mask_msisdn(msisdn)}: {exc!r}")
    return messages.SYSTEM_ERROR
