"""Fulfilment of service and voucher orders, in the core: the queue, leases, outcomes, the
refund of a failed order to the very lots it drew from, and the CSV fallback's round trip."""

from __future__ import annotations

import csv
import json
from datetime import date, timedelta

import pytest

from core.accounts import balance, check_ledger, credit_points
from core.cli import main as loyalty
from core.fulfilment import (
    Attempt,
    RetryPolicy,
    claim_fulfilments,
    fail_order,
    pending_fulfilments,
    record_attempt,
)
from core.redemption import redeem
from tests.core.helpers import add_member, add_reward

M = "13800138000"
LEASE_S = 60
POLICY = RetryPolicy(max_attempts=2, backoff_base_s=30, backoff_cap_s=600)


@pytest.fixture
def member(store, run, now):
    add_member(store, M, language="en")
    run(credit_points, M, 300, "bill", date(2024, 3, 1), now, reference="old")
    run(credit_points, M, 700, "bill", date(2026, 3, 1), now, reference="new")
    add_reward(store, "D01", kind="service", points=400, stock=5)
    add_reward(store, "V01", kind="voucher", points=100)
    add_reward(store, "G01", kind="gift", points=100)
    return M


def lots_left(store) -> dict[str, int]:
    with store.unit_of_work(write=False) as uow:
        return {lot.reference: lot.remaining for lot in uow.members.spendable_lots(M, NOW)}


def order_state(store, order_no):
    with store.unit_of_work(write=False) as uow:
        return (uow.orders.get_order(order_no).status,
                *uow.fulfilment.fulfilment_outcome(order_no))


def sms(store) -> list[tuple[str, dict]]:
    with store.unit_of_work(write=False) as uow:
        return [(r["template"], json.loads(r["params"])) for r in uow.messaging.outbox_rows(M)
                if r["kind"] == "fulfilment"]


NOW = None  # set by the autouse fixture below (lots are read "now")


@pytest.fixture(autouse=True)
def _now(now):
    global NOW
    NOW = now


def test_service_and_voucher_orders_are_queued_gifts_are_not(run, now, member):
    service = run(redeem, M, "D01", "sms", "r1", now)
    voucher = run(redeem, M, "V01", "sms", "r2", now)
    run(redeem, M, "G01", "sms", "r3", now)
    assert [i.order_no for i in run(pending_fulfilments)] == [service.order_no, voucher.order_no]
    (item,) = [i for i in run(pending_fulfilments) if i.order_no == service.order_no]
    assert (item.msisdn, item.reward_code, item.reward_kind, item.quantity) == \
        (M, "D01", "service", 1)


def test_a_claim_holds_the_order_until_its_lease_lapses_then_it_is_claimed_again(
        store, run, now, member):
    order = run(redeem, M, "D01", "sms", "r1", now)
    (first,) = run(claim_fulfilments, now, LEASE_S, 10)
    assert (first.order_no, first.status, first.attempts) == (order.order_no, "fulfilling", 1)
    assert run(claim_fulfilments, now + timedelta(seconds=LEASE_S - 1), LEASE_S, 10) == []
    (again,) = run(claim_fulfilments, now + timedelta(seconds=LEASE_S + 1), LEASE_S, 10)
    assert (again.order_no, again.attempts) == (order.order_no, 2)
    # The first claimant's late error does not disturb the second claim.
    assert run(record_attempt, first, Attempt("error", "HTTP 503"), POLICY, now) == "stale"
    assert order_state(store, order.order_no)[0] == "fulfilling"


def test_applied_keeps_the_reference_and_tells_the_member(store, run, now, member):
    order = run(redeem, M, "D01", "sms", "r1", now)
    (item,) = run(claim_fulfilments, now, LEASE_S, 10)
    assert run(record_attempt, item, Attempt("applied", "PRV000001", 200), POLICY, now) == \
        "fulfilled"
    assert order_state(store, order.order_no) == ("fulfilled", "PRV000001", None)
    assert sms(store) == [("fulfil_done", {
        "order_no": order.order_no, "reward_code": "D01", "reward_name": "Reward D01",
        "reward_kind": "service", "reference": "PRV000001"})]
    assert run(pending_fulfilments) == []
    # A late answer for the same order changes nothing.
    assert run(record_attempt, item, Attempt("refused", "no", 422), POLICY, now) == "stale"
    assert run(check_ledger) == []


def test_refused_refunds_the_same_lots_returns_the_stock_and_tells_once(store, run, now, member):
    before = lots_left(store)
    order = run(redeem, M, "D01", "sms", "r1", now)
    assert lots_left(store) == {"new": 600}  # "old" spent whole
    (item,) = run(claim_fulfilments, now, LEASE_S, 10)
    refused = Attempt("refused", "not eligible for this offer", 422)
    assert run(record_attempt, item, refused, POLICY, now) == "failed"
    assert lots_left(store) == before
    assert run(balance, M, now).points == 1000
    with store.unit_of_work(write=False) as uow:
        assert uow.orders.get_reward("D01").stock == 5
    status, _, error = order_state(store, order.order_no)
    assert (status, error) == ("failed", "refused: 422 not eligible for this offer")
    assert sms(store) == [("fulfil_failed", {
        "order_no": order.order_no, "reward_code": "D01", "reward_name": "Reward D01",
        "reason": "refused", "points_refunded": 400})]
    # Never twice: a replayed outcome, or the operator failing it again, refunds nothing.
    assert run(record_attempt, item, refused, POLICY, now) == "stale"
    assert run(fail_order, order.order_no, "refused", "again", now) is False
    assert run(balance, M, now).points == 1000 and len(sms(store)) == 1
    assert run(check_ledger) == []


def test_errors_are_retried_with_backoff_then_the_order_fails_and_is_refunded(
        store, run, now, member):
    order = run(redeem, M, "D01", "sms", "r1", now)
    (item,) = run(claim_fulfilments, now, LEASE_S, 10)
    assert run(record_attempt, item, Attempt("error", "HTTP 503"), POLICY, now) == "retry"
    assert order_state(store, order.order_no)[0] == "confirmed"
    assert run(claim_fulfilments, now + timedelta(seconds=29), LEASE_S, 10) == []
    later = now + timedelta(seconds=31)
    (item,) = run(claim_fulfilments, later, LEASE_S, 10)
    assert item.attempts == 2
    assert run(record_attempt, item, Attempt("error", "timeout after 10s"), POLICY, later) == \
        "failed"
    status, _, error = order_state(store, order.order_no)
    assert status == "failed" and error.startswith("not_applied: gave up after 2 attempts")
    assert sms(store)[0][1]["reason"] == "not_applied"
    assert run(balance, M, now).points == 1000
    assert run(check_ledger) == []


def test_a_failed_order_no_longer_counts_toward_the_member_limit(store, run, now, member):
    add_reward(store, "L01", kind="service", points=10, limit=1)
    order = run(redeem, M, "L01", "sms", "r1", now)
    run(fail_order, order.order_no, "refused", "x", now)
    assert run(redeem, M, "L01", "sms", "r2", now).status == "confirmed"


def test_csv_export_and_import_round_trip(store, run, now, member, database_url, monkeypatch,
                                          tmp_path, capsys):
    monkeypatch.setenv("LOYALTY_DATABASE_URL", database_url)
    applied = run(redeem, M, "D01", "sms", "r1", now)
    refused = run(redeem, M, "V01", "sms", "r2", now)
    gift = run(redeem, M, "G01", "sms", "r3", now)
    export = tmp_path / "pending.csv"
    assert loyalty(["orders", "export", "--pending", "--output", str(export)]) == 0
    with export.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["order_no"], r["msisdn"], r["reward_code"], r["kind"], r["quantity"])
            for r in rows] == [(applied.order_no, M, "D01", "service", "1"),
                               (refused.order_no, M, "V01", "voucher", "1")]
    assert rows[0]["requested_at"] == now.isoformat().replace("+00:00", "Z")

    results = tmp_path / "results.csv"
    results.write_text(
        "order_no,result,reference,reason\n"
        f"{applied.order_no},fulfilled,OP-77,\n"
        f"{refused.order_no},failed,,number is prepaid\n"
        "999999000000,fulfilled,X,\n"
        f"{gift.order_no},fulfilled,X,\n"
        f"{applied.order_no},maybe,,\n", encoding="utf-8")
    capsys.readouterr()
    assert loyalty(["import", "fulfilments", str(results)]) == 1
    out = capsys.readouterr()
    assert "5 rows, 1 fulfilled, 1 failed (refunded), 0 settled already, 3 refused" in out.out
    assert f"{results}:4: unknown order 999999000000" in out.err
    assert f"{results}:5: " in out.err and f"{results}:6: " in out.err
    assert order_state(store, applied.order_no) == ("fulfilled", "OP-77", None)
    assert order_state(store, refused.order_no) == \
        ("failed", None, "refused: number is prepaid")
    assert [t for t, _ in sms(store)] == ["fulfil_done", "fulfil_failed"]
    assert run(balance, M, now).points == 1000 - 400 - 100
    # The same file again settles nothing twice.
    assert loyalty(["import", "fulfilments", str(results)]) == 1
    assert "0 fulfilled, 0 failed (refunded), 2 settled already" in capsys.readouterr().out
    assert len(sms(store)) == 2
    assert loyalty(["orders", "export", "--pending"]) == 0
    assert capsys.readouterr().out.strip() == \
        "order_no,msisdn,reward_code,kind,quantity,requested_at"
    assert loyalty(["check", "ledger"]) == 0
