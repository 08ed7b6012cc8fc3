"""The tier review job with imported tier grants and with a corrupt account."""

from __future__ import annotations

from datetime import UTC, date, datetime

from core.accounts import credit_points
from tests.core.jobs.conftest import add_members, drive, local, outbox_rows

A, B, C = "13800138000", "13900139000", "15800158000"


def grant(store, msisdn, code, until):
    with store.unit_of_work() as uow:
        uow.members.update_member(msisdn, granted_tier_code=code, granted_tier_until=until)


def test_the_job_never_downgrades_below_a_grant_before_its_date(store, rules, config, run):
    add_members(store, A, B, tier="gold", tier_valid_until=date(2026, 11, 30))  # Gold lapsed
    grant(store, A, "gold", date(2027, 6, 30))
    grant(store, B, "silver", date(2027, 6, 30))
    at = local(2026, 12, 1, 2, 0)

    preview = drive(store, rules, config, "tier-review", at, dry_run=True, samples=5)
    assert [(s.msisdn, s.params["tier_name"]) for s in preview.samples] == [(B, "银卡会员")]
    result = drive(store, rules, config, "tier-review", at)
    assert result.counts == {"members": 2, "reviewed": 2, "downgraded": 1}
    assert [(n["msisdn"], n["params"]["tier_name"]) for n in outbox_rows(store)] == [
        (B, "银卡会员")]
    with store.unit_of_work(write=False) as uow:
        member_a = uow.members.get_member(A)
        assert (member_a.tier_code, member_a.tier_valid_until) == ("gold", date(2027, 6, 30))

    after = drive(store, rules, config, "tier-review", local(2027, 7, 1, 2, 0))
    assert after.counts["downgraded"] == 2


def test_a_corrupt_account_does_not_stop_the_job(store, rules, config, run):
    add_members(store, A, C)
    huge = 2**62 if store.engine.dialect.name == "sqlite" else 2**31 - 1
    with store.unit_of_work() as uow:
        for n in range(2):
            uow.members.add_lot(msisdn=A, amount=huge, source="bill", earned_on=date(2026, 6, 1),
                                expires_at=datetime(2029, 1, 1, tzinfo=UTC), reference=f"X{n}",
                                now=local(2026, 6, 2))
    run(credit_points, C, 2500, "bill", date(2026, 6, 1), local(2026, 6, 2))
    result = drive(store, rules, config, "tier-review", local(2026, 12, 1, 2, 0))
    assert result.state == "done"
    assert result.counts == {"members": 2, "needs_attention": 1, "upgraded": 1, "reviewed": 1}
    assert [n["msisdn"] for n in outbox_rows(store)] == [C]
    warned = drive(store, rules, config, "expiry-warnings", local(2028, 12, 1, 10, 0))
    assert warned.state == "done"


def test_a_member_who_opted_out_gets_no_tier_notice(store, rules, config, run):
    add_members(store, A, B, tier="gold", tier_valid_until=date(2026, 11, 30))  # Gold lapsed
    with store.unit_of_work() as uow:
        uow.members.update_member(A, warning_opt_out=True)  # she texted TD
    result = drive(store, rules, config, "tier-review", local(2026, 12, 1, 2, 0))
    assert result.counts == {"members": 2, "reviewed": 2, "downgraded": 2, "opted_out": 1}
    assert [n["msisdn"] for n in outbox_rows(store)] == [B]
    with store.unit_of_work(write=False) as uow:
        assert uow.members.get_member(A).tier_code != "gold"  # reviewed all the same
