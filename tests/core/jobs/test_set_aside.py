"""One member a job cannot process (corrupt data, any unexpected error) is counted and set
aside; the run goes on for everyone else and ends ``done``."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

import core.jobs.tier_review as tier_review_job
from core.accounts import balance, check_ledger, credit_points
from core.service_desk import subscribe_auto_redemption
from core.store.jobs_sql import SqlJobs
from core.store.members_sql import SqlMembers
from core.store.tables import job_set_aside
from tests.core.helpers import add_reward
from tests.core.jobs.conftest import add_lot, add_members, drive, local, outbox_rows

A, B, C = "13800138000", "13900139000", "15800158000"


def set_aside(store) -> list[tuple[str, str, str]]:
    with store.unit_of_work(write=False) as uow:
        return [(r.job, r.item, r.error) for r in uow.conn.execute(
            select(job_set_aside).order_by(job_set_aside.c.id))]


@pytest.mark.parametrize("batch", [None, 2])
def test_expiry_warnings_go_on_past_a_member_that_fails(store, rules, config, monkeypatch,
                                                        batch):
    add_members(store, A, B, C)
    for m in (A, B, C):
        add_lot(store, rules, m, 700, earned_on=date(2024, 3, 1))
    original = SqlJobs.expiring_batches

    def failing(self, after, upto, now, horizon):
        if after < B <= upto:
            raise RuntimeError("corrupt lots")
        return original(self, after, upto, now, horizon)

    monkeypatch.setattr(SqlJobs, "expiring_batches", failing)
    kwargs = {} if batch is None else {"batch": batch}
    result = drive(store, rules, config, "expiry-warnings", local(2026, 12, 1), **kwargs)
    assert result.state == "done"
    assert result.counts["set_aside"] == 1 and result.counts["sms_30d"] == 2
    assert [r["msisdn"] for r in outbox_rows(store)] == [A, C]
    assert set_aside(store) == [("expiry-warnings", B, "RuntimeError: corrupt lots")]


def test_tier_review_goes_on_past_a_member_that_fails(store, rules, config, run, monkeypatch):
    add_members(store, A, B, C)
    for m in (A, B, C):
        run(credit_points, m, 2500, "bill", date(2026, 6, 1), local(2026, 6, 2))
    original = tier_review_job.review_tier

    def failing(uow, rules, msisdn, now):
        if msisdn == B:
            raise ValueError("broken member record")
        return original(uow, rules, msisdn, now)

    monkeypatch.setattr(tier_review_job, "review_tier", failing)
    result = drive(store, rules, config, "tier-review", local(2026, 12, 1, 2, 0))
    assert result.state == "done"
    assert result.counts["set_aside"] == 1 and result.counts["upgraded"] == 2
    assert [n["msisdn"] for n in outbox_rows(store, kind="tier_changed")] == [A, C]
    assert [(j, i) for j, i, _ in set_aside(store)] == [("tier-review", B)]


def test_auto_redeem_goes_on_past_a_subscription_that_fails(store, rules, config, run,
                                                            monkeypatch):
    add_reward(store, "A02", points=800)
    add_members(store, A, B, C)
    for m in (A, B, C):
        run(credit_points, m, 2000, "bill", date(2026, 5, 1), local(2026, 5, 2),
            reference=f"ref-{m}")
        run(subscribe_auto_redemption, m, "A02", local(2026, 6, 1))
    original = SqlMembers.get_member

    def failing(self, msisdn, **kwargs):
        if msisdn == B:
            raise RuntimeError("broken member record")
        return original(self, msisdn, **kwargs)

    monkeypatch.setattr(SqlMembers, "get_member", failing)
    result = drive(store, rules, config, "auto-redeem", local(2026, 12, 1, 9, 0))
    monkeypatch.setattr(SqlMembers, "get_member", original)
    assert result.state == "done"
    assert result.counts["set_aside"] == 1 and result.counts["redeemed"] == 2
    assert [n["msisdn"] for n in outbox_rows(store, kind="auto_redeem")] == [A, C]
    assert run(balance, B, local(2026, 12, 2)).points == 2000  # nothing half done
    assert [(j, i) for j, i, _ in set_aside(store)] == [("auto-redeem", "2")]
    assert run(check_ledger) == []
