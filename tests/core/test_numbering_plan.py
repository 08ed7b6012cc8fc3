"""Every use case finds a member by the configured numbering plan, not the default's +86 rules
(a programme in another country writes its members' numbers with its own country code)."""

from dataclasses import replace
from datetime import date

import pytest

from core.accounts import balance, credit_points, tier_status
from core.cli_errors import explain
from core.domain import InvalidMsisdn, UnknownMember
from core.numbering import NumberingPlan
from core.redemption import redeem
from tests.core.helpers import add_member, add_reward

UK = NumberingPlan("44", "7[0-9]{9}")
MEMBER = "7700900123"  # as imported: the plan's national form


@pytest.fixture
def uk_run(store, rules):
    uk = replace(rules, numbering=UK)

    def _run(use_case, *args, **kwargs):
        with store.unit_of_work() as uow:
            return use_case(uow, uk, *args, **kwargs)
    return _run


@pytest.mark.parametrize("written", [MEMBER, "+447700900123", "00447700900123", "07700900123",
                                     "+44 7700 900123"])
def test_a_member_is_found_by_every_form_of_her_number_the_plan_accepts(store, uk_run, now,
                                                                        written):
    add_member(store, MEMBER)
    uk_run(credit_points, MEMBER, 500, "bill", date(2026, 5, 1), now, reference="r1")
    assert uk_run(balance, written, now).points == 500
    assert uk_run(tier_status, written, now).qualifying_points == 500
    add_reward(store, "A01", points=200)
    order = uk_run(redeem, written, "A01", "sms", "req-1", now)
    assert (order.msisdn, order.points) == (MEMBER, 200)
    assert uk_run(balance, MEMBER, now).points == 300


def test_an_unknown_member_is_named_in_the_plans_national_form_masked(store, uk_run, now):
    with pytest.raises(UnknownMember) as caught:
        uk_run(balance, "+44 7700 900999", now)
    assert caught.value.args == ("7700900999",)
    assert explain(caught.value).message.startswith("no member 770***0999: ")
    with pytest.raises(UnknownMember) as caught:  # the one-call redemption says the same
        uk_run(redeem, "+447700900999", "A01", "sms", "req-2", now)
    assert caught.value.args == ("7700900999",)


def test_a_number_of_another_country_is_refused_not_cut_to_a_national_one(store, uk_run, now):
    add_member(store, MEMBER)
    with pytest.raises(InvalidMsisdn):
        uk_run(balance, "+867700900123", now)
