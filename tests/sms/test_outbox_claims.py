"""Outbox claims between processes: a process that stalled past its lease and lost the claim
to another process can no longer change the row (the claim is fenced by the row's attempts).

Two processes are two sequences of units of work here, on one real database (SQLite, and
PostgreSQL when LOYALTY_TEST_DATABASE_URL is set); tests/faults/test_scale_out.py runs real
server processes."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import pytest_twisted

from core.messaging.outbox import Outcome, claim_batch, extend_claims, record_events, release_claims
from core.service_desk import queue_sms
from sms.outbox import SenderSettings
from sms.pdu import normalise_message_id
from tests.sms.channel_helpers import converse
from tests.sms.conftest import sleep

LEASE = timedelta(seconds=30)
MSISDN = "13900000001"
ZHANG = "13800138000"  # a demo member


def body(row) -> str:
    return row.body


def outbox_row_list(store, msisdn: str) -> list[dict]:
    with store.unit_of_work(write=False) as uow:
        return uow.messaging.outbox_rows(msisdn)


def outbox_row(store, row_id: int) -> dict:
    with store.unit_of_work(write=False) as uow:
        return next(r for r in uow.messaging.outbox_rows(MSISDN) if r["id"] == row_id)


def test_a_process_that_lost_its_claim_cannot_requeue_release_or_extend_the_row(
        run, store, now):
    row_id = run(queue_sms, MSISDN, now, kind="test", body="Loyalty notice", language="en")
    (a_row,), _ = run(claim_batch, now, now + LEASE, 10, body)  # process A
    assert a_row.attempts == 1

    # A stalls past its lease; B claims the row and sends it.
    later = now + LEASE + timedelta(seconds=1)
    (b_row,), _ = run(claim_batch, later, later + LEASE, 10, body)
    assert (b_row.id, b_row.attempts) == (row_id, 2)
    assert run(extend_claims, [(row_id, a_row.attempts)], later + 2 * LEASE) == {row_id}
    run(release_claims, [(row_id, a_row.attempts)])  # A stopping: B's claim stays
    row = outbox_row(store, row_id)
    assert row["state"] == "sending" and row["attempts"] == 2
    assert row["claimed_until"].replace(tzinfo=now.tzinfo) == later + LEASE

    run(record_events, [Outcome(row_id, ("b-1",), ((0, "b-1"),), "submitted",
                                attempt=b_row.attempts)], [], later, normalise_message_id)
    # A's submit timed out meanwhile: its "retry" must not queue the row B has sent.
    run(record_events, [Outcome(row_id, (None,), (), "retry", "timeout", later,
                                attempt=a_row.attempts)], [], later, normalise_message_id)
    row = outbox_row(store, row_id)
    assert row["state"] == "submitted" and row["message_ids"] == '["b-1"]'
    (nothing, _) = run(claim_batch, later + 2 * LEASE, later + 3 * LEASE, 10, body)
    assert nothing == []  # nobody sends it a third time


def test_the_holder_extends_records_and_releases_its_own_claim(run, store, now):
    row_id = run(queue_sms, MSISDN, now, kind="test", body="Loyalty notice", language="en")
    (row,), _ = run(claim_batch, now, now + LEASE, 10, body)
    assert run(extend_claims, [(row_id, row.attempts)], now + 2 * LEASE) == set()
    assert outbox_row(store, row_id)["claimed_until"].replace(tzinfo=now.tzinfo) == \
        now + 2 * LEASE
    run(release_claims, [(row_id, row.attempts)])
    assert outbox_row(store, row_id)["state"] == "queued"
    (row,), _ = run(claim_batch, now, now + LEASE, 10, body)
    run(record_events, [Outcome(row_id, ("m-1",), ((0, "m-1"),), "submitted",
                                attempt=row.attempts)], [], now, normalise_message_id)
    assert outbox_row(store, row_id)["state"] == "submitted"


@pytest_twisted.ensureDeferred
async def test_an_mt_whose_outcome_is_slow_to_record_keeps_its_claim_and_goes_once(
        channels, sim, demo, monkeypatch):
    """The submit outcome waits for the database (a long round of the SMS lane) past the
    lease: the claim must still be extended, or a claim round takes the row again while its
    outcome is pending, the outcome is dropped as stale and the row is sent a second time.
    The race needs a second database thread (PostgreSQL's pool): on SQLite's one thread the
    claim round waits behind the slow recording, so the test could not fail there."""
    import sms.outbox

    if demo.is_sqlite:
        pytest.skip("needs a second database thread: PostgreSQL only")

    real, slowed = sms.outbox.record_events, []

    def slow_record(uow, rules, outcomes, receipts, *args):
        if outcomes and not slowed:
            slowed.append(outcomes)
            time.sleep(1.5)  # the database thread busy for over two leases
        return real(uow, rules, outcomes, receipts, *args)

    monkeypatch.setattr(sms.outbox, "record_events", slow_record)
    ch = await channels(sender=SenderSettings(
        max_parts=3, max_in_flight=200, lease_s=0.6, poll_s=0.05, retry_base_s=0.05,
        retry_max_s=0.5)).start()
    first = await converse(ch, ZHANG, "JF")
    await sleep(3.0)  # five leases: time for a second claim and a second send
    assert slowed and sim.texts_to(ZHANG) == [first]
    (row,) = [r for r in outbox_row_list(ch.store, ZHANG)]
    assert row["state"] in ("submitted", "delivered")
