"""A redemption's idempotency key includes the member: the same request id, channel and reward
used by two members always gives two orders and two debits (and each member's own replay
returns that member's order, never the other's)."""

from __future__ import annotations

import itertools
from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from core.accounts import balance, check_ledger, credit_points, history
from core.domain import Channel
from core.redemption import confirm_redemption, redeem, start_confirmation
from tests.core.helpers import add_member, add_reward

START = 500  # points each member starts with

_numbers = itertools.count(13900000000)

request_ids = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1,
                      max_size=120)


def two_new_members(store, run, now) -> tuple[str, str]:
    """Two members nobody has used yet (examples share the database), START points each."""
    pair = (str(next(_numbers)), str(next(_numbers)))
    for msisdn in pair:
        add_member(store, msisdn)
        run(credit_points, msisdn, START, "bill", date(2026, 10, 1), now)
    return pair


def test_two_members_with_one_request_id_get_two_orders_and_two_debits(store, run, now):
    # The examples run inside one test (one database), each with two members of its own.
    @settings(max_examples=30, deadline=None)
    @given(request_id=request_ids, channel=st.sampled_from(list(Channel)),
           price=st.integers(min_value=1, max_value=START), first_replays=st.booleans())
    def two_members_one_request(request_id, channel, price, first_replays):
        first, second = two_new_members(store, run, now)
        add_reward(store, "P01", points=price)
        mine = run(redeem, first, "P01", channel, request_id, now)
        if first_replays:  # the first member's own replay is the same order
            assert run(redeem, first, "P01", channel, request_id, now).order_no == mine.order_no
        theirs = run(redeem, second, "P01", channel, request_id, now)
        assert mine.order_no != theirs.order_no
        assert (mine.msisdn, theirs.msisdn) == (first, second)
        assert run(redeem, second, "P01", channel, request_id, now).order_no == theirs.order_no
        assert run(redeem, first, "P01", channel, request_id, now).order_no == mine.order_no
        for msisdn in (first, second):
            assert run(balance, msisdn, now).points == START - price
            debits = [e for e in run(history, msisdn, now) if e.kind == "debit"]
            assert [e.amount for e in debits] == [-price]

    two_members_one_request()
    assert run(check_ledger) == []


def test_a_confirmation_code_replayed_returns_the_members_own_order(store, run, now):
    first, second = two_new_members(store, run, now)
    add_reward(store, "P01", points=100)
    orders = {}
    for msisdn in (first, second):
        _, code, _ = run(start_confirmation, msisdn, "P01", Channel.SMS, now)
        orders[msisdn] = run(confirm_redemption, msisdn, code, Channel.SMS, now)
        again = run(confirm_redemption, msisdn, code, Channel.SMS, now)
        assert again.order_no == orders[msisdn].order_no and again.msisdn == msisdn
    assert orders[first].order_no != orders[second].order_no
    assert [run(balance, m, now).points for m in (first, second)] == [START - 100] * 2
