"""Which job messages an opted-out member (``TD``) still gets: those about her own points and
orders (the monthly automatic redemption), never the optional ones."""

from __future__ import annotations

from datetime import date

from core.accounts import credit_points
from core.preferences import set_preferences
from core.service_desk import subscribe_auto_redemption
from tests.core.helpers import add_reward
from tests.core.jobs.conftest import add_members, drive, local, outbox_rows

A = "13800138000"


def test_an_opted_out_subscriber_still_hears_of_her_automatic_redemption(store, rules, config,
                                                                          run):
    add_reward(store, "A02", points=800)
    add_members(store, A, opt_out=True)
    run(credit_points, A, 2000, "bill", date(2026, 5, 1), local(2026, 5, 2), reference="ref-a")
    run(subscribe_auto_redemption, A, "A02", local(2026, 6, 1))
    drive(store, rules, config, "auto-redeem", local(2026, 12, 1, 9, 0))
    assert [r["template"] for r in outbox_rows(store, msisdn=A)] == ["auto_redeem_done"]


def test_one_reward_a_month_a_new_sign_up_replaces_the_old(store, rules, config, run):
    add_reward(store, "A02", points=800)
    add_reward(store, "A03", points=500)
    add_members(store, A)
    run(credit_points, A, 5000, "bill", date(2026, 5, 1), local(2026, 5, 2), reference="ref-a")
    run(set_preferences, A, local(2026, 6, 1), auto_redeem="A02")
    prefs = run(set_preferences, A, local(2026, 6, 2), auto_redeem="a03")
    assert prefs.auto_reward_code == "A03"
    result = drive(store, rules, config, "auto-redeem", local(2026, 12, 1, 9, 0))
    assert (result.counts["subscriptions"], result.counts["points"]) == (1, 500)
