"""Answering tickets: a member reads their ticket's status, ops list, show and resolve them.

Recording a ticket is ``core.service_desk.record_ticket``. Resolving a make-up claim with points
credits them once: the credit's reference is the ticket's, and the ledger refuses a second
entry with the same reference, so a second resolve (or two at once) never credits twice.
"""

from __future__ import annotations

from datetime import datetime

from core import messages
from core.accounts import credit_points, require_member
from core.domain import (
    Channel,
    InvalidInput,
    Ticket,
    TicketAlreadyResolved,
    TicketKind,
    UnknownTicket,
)
from core.ports import UnitOfWork
from core.rules import ProgrammeRules
from core.service_desk import queue_sms

MAKEUP_SOURCE = "makeup"  # the points source of a granted make-up claim (core.domain)
MAX_OUTCOME_TEXT = 300


def credit_reference(ticket: Ticket) -> str:
    """The ledger reference of a claim's credit: the member and the ticket, so it is unique."""
    return f"ticket:{ticket.msisdn}:{ticket.ref}"


def ticket_status(uow: UnitOfWork, rules: ProgrammeRules, msisdn: str, ref: str) -> Ticket:
    """The member's own ticket ``ref``; another member's is as unknown as a missing one."""
    member = require_member(uow, rules, msisdn)
    ticket = uow.tickets.get_ticket(ref.strip().upper())
    if ticket is None or ticket.msisdn != member.msisdn:
        raise UnknownTicket(ref)
    return ticket


def latest_ticket(uow: UnitOfWork, rules: ProgrammeRules, msisdn: str) -> Ticket | None:
    member = require_member(uow, rules, msisdn)
    found = uow.tickets.list_tickets(msisdn=member.msisdn, limit=1)
    return found[0] if found else None


def member_tickets(uow: UnitOfWork, rules: ProgrammeRules, msisdn: str, *,
                   limit: int = 20) -> list[Ticket]:
    return uow.tickets.list_tickets(msisdn=msisdn, limit=limit)


def list_tickets(uow: UnitOfWork, rules: ProgrammeRules, *, open_only: bool = False,
                 kind: str | None = None, limit: int = 200) -> list[Ticket]:
    if kind is not None and kind not in set(TicketKind):
        raise InvalidInput(f"unknown ticket kind {kind!r}")
    return uow.tickets.list_tickets(open_only=open_only, kind=kind, limit=limit)


def show_ticket(uow: UnitOfWork, rules: ProgrammeRules, ref: str) -> Ticket:
    ticket = uow.tickets.get_ticket(ref.strip().upper())
    if ticket is None:
        raise UnknownTicket(ref)
    return ticket


def resolve_ticket(uow: UnitOfWork, rules: ProgrammeRules, ref: str, outcome: str,
                   now: datetime, *, credit: int | None = None) -> Ticket:
    """Close an open ticket with ``outcome``; a make-up claim may grant ``credit`` points (one
    ledger credit, source ``makeup``). The member is told by SMS, queued in this transaction."""
    outcome = outcome.strip()[:MAX_OUTCOME_TEXT]
    if not outcome:
        raise InvalidInput("an outcome is needed: say what was decided")
    ticket = uow.tickets.get_ticket(ref.strip().upper(), for_update=True)
    if ticket is None:
        raise UnknownTicket(ref)
    if ticket.status != "open":
        raise TicketAlreadyResolved(f"ticket {ticket.ref} was already resolved "
                                    f"({ticket.resolved_at:%Y-%m-%d %H:%M} UTC); nothing changed")
    if credit is not None:
        if ticket.kind != TicketKind.MAKEUP:
            raise InvalidInput(f"ticket {ticket.ref} is a complaint: only a make-up claim can "
                               "be credited")
        limit = rules.programme.max_points_per_row
        if not 0 < credit <= limit:
            raise InvalidInput(f"credit must be between 1 and {limit} points "
                               "(programme.max_points_per_row)")
        lot = credit_points(uow, rules, ticket.msisdn, credit, MAKEUP_SOURCE, rules.today(now),
                            now, reference=credit_reference(ticket), channel=Channel.OPS,
                            reason=MAKEUP_SOURCE)  # the history names it a make-up credit
        if lot is None:
            raise TicketAlreadyResolved(f"ticket {ticket.ref} was already credited; "
                                        "nothing changed")
    if not uow.tickets.resolve_ticket(ticket.ref, outcome=outcome, credit_points=credit, now=now):
        raise TicketAlreadyResolved(f"ticket {ticket.ref} was already resolved; nothing changed")
    message = messages.ticket_resolved_message(ticket.kind, ticket.ref, outcome, credit)
    queue_sms(uow, rules, ticket.msisdn, now, kind="ticket", template=message.template,
              params=message.params, dedupe_key=f"ticket-resolved:{ticket.msisdn}:{ticket.ref}")
    return uow.tickets.get_ticket(ticket.ref)
