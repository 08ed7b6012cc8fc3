"""Balance, expiry, tier, history and PIN use cases against a real database."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.accounts import (
    balance,
    check_ledger,
    credit_points,
    deduct_points,
    expire_lapsed_lots,
    history,
    review_tier,
    set_pin,
    tier_status,
    verify_pin,
)
from core.domain import InvalidMsisdn, LedgerKind, UnknownMember
from tests.core.helpers import add_member

SHANGHAI = ZoneInfo("Asia/Shanghai")
M = "13800138000"


def test_year_end_boundary_in_shanghai_whatever_utc_says(store, run):
    add_member(store, M)
    run(credit_points, M, 700, "bill", date(2024, 5, 1), datetime(2024, 5, 2, tzinfo=UTC),
        reference="r1")
    before = datetime(2026, 12, 31, 23, 59, 58, tzinfo=SHANGHAI)
    at_midnight = datetime(2027, 1, 1, 0, 0, 0, tzinfo=SHANGHAI)
    # 23:59:58 local is 15:59:58 UTC on the same day; 00:00:00 local is still 31 Dec in UTC.
    assert run(balance, M, before).points == 700
    assert run(balance, M, before).next_expiry_date == date(2026, 12, 31)
    assert run(balance, M, at_midnight).points == 0
    assert at_midnight.astimezone(UTC).date() == date(2026, 12, 31)


def test_balance_tells_the_soonest_batch_and_its_date(store, run, now):
    add_member(store, M)
    run(credit_points, M, 300, "tenure", date(2024, 2, 1), now, reference="a")
    run(credit_points, M, 200, "bill", date(2024, 9, 1), now, reference="b")
    run(credit_points, M, 1000, "bill", date(2026, 3, 1), now, reference="c")
    result = run(balance, M, now)
    assert (result.points, result.next_expiry_points, result.next_expiry_date) == \
        (1500, 500, date(2026, 12, 31))


def test_expiry_job_writes_ledger_entries_and_running_twice_changes_nothing(store, run):
    add_member(store, M)
    earned = datetime(2024, 5, 2, tzinfo=UTC)
    run(credit_points, M, 700, "bill", date(2024, 5, 1), earned, reference="old")
    run(credit_points, M, 50, "bill", date(2026, 5, 1), earned, reference="new")
    after = datetime(2027, 1, 1, 0, 0, 1, tzinfo=SHANGHAI)
    assert run(expire_lapsed_lots, after) == (1, 700)
    assert run(expire_lapsed_lots, after) == (0, 0)
    entries = run(history, M, after)
    assert entries[0].kind == LedgerKind.EXPIRY and entries[0].amount == -700
    assert run(balance, M, after).points == 50
    assert run(check_ledger) == []


def test_tier_from_rolling_12_months_of_qualifying_points(store, run, now):
    add_member(store, M)
    run(credit_points, M, 1500, "bill", date(2026, 1, 10), now, reference="q1")
    run(credit_points, M, 9000, "bill", date(2025, 1, 10), now, reference="too-old")
    run(credit_points, M, 5000, "reward", date(2026, 2, 1), now, reference="not-qualifying")
    status = run(tier_status, M, now)
    assert (status.code, status.qualifying_points) == ("standard", 1500)
    assert (status.next_code, status.points_to_next) == ("silver", 500)
    run(credit_points, M, 500, "ontime", date(2026, 11, 1), now, reference="q2")
    status = run(tier_status, M, now)
    assert (status.code, status.next_code, status.points_to_next) == ("silver", "gold", 4000)


def test_reviewed_tier_is_kept_until_its_valid_until_date(store, run, now):
    add_member(store, M)
    run(credit_points, M, 7000, "bill", date(2026, 1, 10), now, reference="big")
    assert run(review_tier, M, now) == ("standard", "gold")
    # Sixteen months on, the qualifying points have left the window...
    later = now + timedelta(days=370)
    kept = run(tier_status, M, later)
    assert (kept.code, kept.valid_until) == ("gold", date(2027, 11, 30))
    # ...and after valid-until the review takes the tier down.
    after = datetime(2027, 12, 1, 4, tzinfo=UTC)
    assert run(tier_status, M, after).code == "standard"
    assert run(review_tier, M, after) == ("gold", "standard")


def test_top_tier_has_nothing_to_reach(store, run, now):
    add_member(store, M)
    run(credit_points, M, 20000, "bill", date(2026, 6, 1), now, reference="x")
    status = run(tier_status, M, now)
    assert (status.code, status.next_code, status.points_to_next, status.priority) == \
        ("diamond", None, 0, True)


def test_penalty_never_takes_the_balance_below_zero(store, run, now):
    add_member(store, M)
    run(credit_points, M, 100, "bill", date(2026, 6, 1), now, reference="x")
    taken = run(deduct_points, M, 250, LedgerKind.PENALTY, "late payment", now)
    assert taken == 100
    assert run(balance, M, now).points == 0
    assert run(history, M, now)[0].amount == -100
    assert run(check_ledger) == []


def test_history_is_newest_first_and_paged(store, run, now):
    add_member(store, M)
    for i in range(5):
        run(credit_points, M, 10 + i, "bill", date(2026, 6, 1), now + timedelta(minutes=i),
            reference=f"h{i}")
    first = run(history, M, now, offset=0, limit=3)
    second = run(history, M, now, offset=3, limit=3)
    assert [e.amount for e in first] == [14, 13, 12]
    assert [e.amount for e in second] == [11, 10]


def test_three_wrong_pins_lock_for_thirty_minutes(store, run, now):
    add_member(store, M)
    run(set_pin, M, "2468", now)
    with store.unit_of_work() as uow:
        assert uow.members.member_pin(M)[0] != "2468" and "2468" not in uow.members.member_pin(M)[0]
    first = run(verify_pin, M, "1111", now)
    assert not first.accepted and first.tries_left == 2 and first.locked_until is None
    second = run(verify_pin, M, "1112", now)
    assert not second.accepted and second.tries_left == 1
    locked = run(verify_pin, M, "1113", now)
    assert not locked.accepted and locked.locked_until == now + timedelta(minutes=30)
    # even the right PIN, while locked
    assert run(verify_pin, M, "2468", now + timedelta(minutes=29)).locked_until == \
        now + timedelta(minutes=30)
    assert run(verify_pin, M, "2468", now + timedelta(minutes=31)).member.msisdn == M


def test_a_right_pin_resets_the_count(store, run, now):
    add_member(store, M)
    run(set_pin, M, "2468", now)
    for _ in range(2):
        assert run(verify_pin, M, "0000", now).tries_left > 0
    assert run(verify_pin, M, "2468", now).accepted
    assert run(verify_pin, M, "0000", now).tries_left == 2


def test_unknown_member(run, now):
    with pytest.raises(UnknownMember):
        run(balance, "13999999999", now)


def test_a_foreign_number_never_reaches_the_mainland_member_with_the_same_digits(store, run,
                                                                              now):
    # +1 415 555 0100 has the digits of the mainland number 14155550100; a use case called
    # with the international form must not read that member's account.
    add_member(store, "14155550100")
    run(credit_points, "14155550100", 500, "bill", date(2026, 3, 1), now, reference="us")
    for foreign in ("+1 415 555 0100", "0014155550100"):
        with pytest.raises(InvalidMsisdn):
            run(balance, foreign, now)
    assert run(balance, "+86 141 5555 0100", now).points == 500
