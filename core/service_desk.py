"""Use cases for tickets (make-up claims, complaints), deliveries and queued messages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core.accounts import require_member
from core.domain import (
    Channel,
    DeliveryStatus,
    InvalidInput,
    Ticket,
    TicketKind,
    UnknownOrder,
    mask_msisdn,
)
from core.ports import UnitOfWork
from core.rules import ProgrammeRules

TICKET_PREFIX = {TicketKind.MAKEUP: "BD", TicketKind.COMPLAINT: "TS"}
MAX_TICKET_TEXT = 500


def record_ticket(uow: UnitOfWork, rules: ProgrammeRules, msisdn: str, kind: str, text: str,
                  channel: str, now: datetime, *, recording_path: str | None = None,
                  order_no: str | None = None) -> Ticket:
    """A make-up claim or complaint; the reference is what the subscriber is told. A complaint
    whose first word is one of the member's order numbers is about that order."""
    if kind not in TICKET_PREFIX:
        raise InvalidInput(f"unknown ticket kind {kind!r}")
    member = require_member(uow, rules, msisdn)
    if order_no is not None:
        order = uow.orders.get_order(order_no)
        if order is None or order.msisdn != member.msisdn:
            raise UnknownOrder(order_no)
    elif kind == TicketKind.COMPLAINT and text.split():
        first = text.split()[0].upper()
        order = uow.orders.get_order(first)
        if order is not None and order.msisdn == member.msisdn:
            order_no = order.order_no
    ticket = uow.tickets.add_ticket(msisdn=member.msisdn, kind=kind,
                                    text=text.strip()[:MAX_TICKET_TEXT], channel=channel,
                                    now=now, prefix=TICKET_PREFIX[kind],
                                    day=rules.today(now), recording_path=recording_path,
                                    order_no=order_no)
    return ticket


def update_delivery(uow: UnitOfWork, rules: ProgrammeRules, order_no: str, status: str,
                    courier: str | None, tracking_no: str | None, now: datetime) -> None:
    if status not in set(DeliveryStatus):
        raise InvalidInput(f"unknown delivery status {status!r}")
    order = uow.orders.get_order(order_no)
    if order is None:
        raise UnknownOrder(order_no)
    if order.delivery is None:
        raise InvalidInput(f"order {order_no} is not a gift order")
    uow.orders.set_delivery(order_no, status, courier or order.delivery.courier,
                            tracking_no or order.delivery.tracking_no, now)


def queue_sms(uow: UnitOfWork, rules: ProgrammeRules, msisdn: str, now: datetime, *, kind: str,
              template: str | None = None, params: dict[str, Any] | None = None,
              body: str | None = None, language: str | None = None,
              dedupe_key: str | None = None, not_before: datetime | None = None) -> int:
    """Queue one MT message in the durable outbox (rendered from ``template`` at send time
    unless ``body`` is given). ``dedupe_key`` makes queuing idempotent."""
    if template is None and body is None:
        raise InvalidInput("a message needs a template or a body")
    member = uow.members.get_member(msisdn)
    lang = language or (member.language if member else rules.programme.default_language)
    message_id = uow.outbox.queue_message(msisdn=msisdn, language=lang, kind=kind, now=now,
                                          template=template, params=params, body=body,
                                          dedupe_key=dedupe_key, not_before=not_before)
    return message_id


def record_call_start(uow: UnitOfWork, rules: ProgrammeRules, uniqueid: str, msisdn: str | None,
                      script: str, now: datetime) -> int:
    """A new call record (a reused uniqueid is a new call too); returns its id."""
    call_id = uow.calls.record_call_start(uniqueid=uniqueid, msisdn_masked=mask_msisdn(msisdn),
                                          script=script, now=now)
    return call_id


def record_call_end(uow: UnitOfWork, rules: ProgrammeRules, uniqueid: str, menu_path: str,
                    outcome: str, now: datetime, *, call_id: int | None = None) -> None:
    uow.calls.record_call_end(uniqueid=uniqueid, menu_path=menu_path, outcome=outcome, now=now,
                              call_id=call_id)


def subscribe_auto_redemption(uow: UnitOfWork, rules: ProgrammeRules, msisdn: str, reward_code: str,
                              now: datetime, *, active: bool = True) -> None:
    """Sign the member up for the monthly automatic redemption of ``reward_code`` (one reward
    a month: any other subscription of hers ends), or end that one (``active=False``).
    Idempotent."""
    member = require_member(uow, rules, msisdn, for_update=True)
    if uow.orders.get_reward(reward_code) is None:
        raise InvalidInput(f"unknown reward {reward_code}")
    if active:
        uow.jobs.auto_redemption_cancel(member.msisdn, keep=reward_code)
    uow.jobs.auto_redemption_subscribe(member.msisdn, reward_code, active, now)


def cancel_auto_redemption(uow: UnitOfWork, rules: ProgrammeRules, msisdn: str,
                           now: datetime) -> bool:
    """End the member's monthly automatic redemption; False if she had none. Idempotent."""
    member = require_member(uow, rules, msisdn, for_update=True)
    return uow.jobs.auto_redemption_cancel(member.msisdn) > 0


__all__ = ["Channel", "record_ticket", "update_delivery", "queue_sms", "record_call_start",
           "record_call_end", "subscribe_auto_redemption", "cancel_auto_redemption"]
