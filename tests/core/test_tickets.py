"""Resolving tickets: the bounds of a credit, refusals that change nothing, the English
outcome SMS queued with the resolution."""

import pytest

from core.accounts import balance
from core.domain import InvalidInput, TicketAlreadyResolved, UnknownTicket
from core.service_desk import record_ticket
from core.tickets import resolve_ticket, ticket_status
from tests.core.helpers import add_member

ALICE, BOB = "15800158000", "13900139000"


@pytest.fixture
def claim(store, run, now):
    add_member(store, ALICE, language="en")
    add_member(store, BOB)
    return run(record_ticket, ALICE, "makeup", "September bill points", "sms", now)


def outbox(store, msisdn):
    with store.unit_of_work(write=False) as uow:
        return uow.messaging.outbox_rows(msisdn)


def test_credit_is_bounded_and_a_refusal_changes_nothing(store, run, now, rules, claim):
    limit = rules.programme.max_points_per_row
    for credit in (0, -5, limit + 1):
        with pytest.raises(InvalidInput):
            run(resolve_ticket, claim.ref, "granted", now, credit=credit)
    with pytest.raises(InvalidInput):
        run(resolve_ticket, claim.ref, "   ", now)
    with pytest.raises(UnknownTicket):
        run(resolve_ticket, "BD991231000099", "granted", now)
    assert run(ticket_status, ALICE, claim.ref).status == "open"
    assert run(balance, ALICE, now).points == 0 and outbox(store, ALICE) == []

    done = run(resolve_ticket, claim.ref.lower(), "Granted.", now, credit=limit)
    assert (done.status, done.credit_points, done.outcome) == ("resolved", limit, "Granted.")
    with pytest.raises(TicketAlreadyResolved):
        run(resolve_ticket, claim.ref, "Granted.", now, credit=limit)
    assert run(balance, ALICE, now).points == limit
    [sms] = outbox(store, ALICE)
    assert (sms["template"], sms["language"]) == ("ticket_resolved", "en")


def test_another_members_ticket_is_unknown_to_them(run, claim):
    with pytest.raises(UnknownTicket):
        run(ticket_status, BOB, claim.ref)
