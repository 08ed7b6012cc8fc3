"""The expiry-warning job with fixed instants: stages, time zones, quiet hours, opt-out, voice,
and a run that crashes half-way and is resumed without sending anything twice."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta

import pytest

from core.jobs.expiry_warnings import expiry_warnings
from core.rules import ProgrammeRules
from core.store.outbox_sql import SqlOutbox
from sms.render import render
from tests.core.jobs.conftest import (
    add_lot,
    add_members,
    drive,
    local,
    outbox_rows,
    run_rows,
    warning_rows,
)

M = "13800138000"
JOB = "expiry-warnings"


def test_first_warning_30_days_before_then_final_7_days_before(store, rules, config):
    add_members(store, M)
    add_lot(store, rules, M, 700, earned_on=date(2024, 3, 1))
    add_lot(store, rules, M, 500, earned_on=date(2024, 9, 1))  # same expiry: one batch
    add_lot(store, rules, M, 900, earned_on=date(2025, 3, 1))  # expires a year later

    # Last valid day 31 Dec 2026: 31 days before, nothing; 30 days before, the first warning.
    assert drive(store, rules, config, JOB, local(2026, 11, 30)).counts.get("sms_30d") is None
    first = drive(store, rules, config, JOB, local(2026, 12, 1))
    assert first.state == "done" and first.counts["sms_30d"] == 1
    for day in (2, 10, 23):  # later days of the window: already warned
        again = drive(store, rules, config, JOB, local(2026, 12, day))
        assert again.counts.get("already_warned") == 1 and "sms_30d" not in again.counts
    final = drive(store, rules, config, JOB, local(2026, 12, 24))
    assert final.counts["sms_7d"] == 1
    drive(store, rules, config, JOB, local(2026, 12, 31))

    rows = outbox_rows(store)
    assert [(r["template"], r["params"]["stage"]) for r in rows] == [
        ("expiry_warning", "30d"), ("expiry_final_warning", "7d")]
    assert all(r["params"]["points"] == 1200 and r["params"]["date"] == "2026-12-31"
               for r in rows)
    assert all(r["kind"] == "expiry_warning" and r["language"] == "zh" for r in rows)
    assert [(w["stage"], w["channel"], w["state"], w["points"]) for w in warning_rows(store)] == [
        ("30d", "sms", "queued", 1200), ("7d", "sms", "queued", 1200)]
    text = render(rows[0]["template"], "zh", rows[0]["params"])
    assert "1200积分" in text and "2026年12月31日" in text and "http" not in text


def test_batch_first_seen_inside_the_final_window_gets_only_the_final_reminder(store, rules,
                                                                             config):
    add_members(store, M)
    add_lot(store, rules, M, 300, earned_on=date(2024, 6, 1))
    drive(store, rules, config, JOB, local(2026, 12, 26))
    assert [r["params"]["stage"] for r in outbox_rows(store)] == ["7d"]


def test_each_expiring_batch_is_warned_separately(store, rules, config):
    add_members(store, M)
    soon = local(2026, 12, 9, 0, 0)  # imported lots can carry other expiry instants
    later = local(2026, 12, 20, 0, 0)
    add_lot(store, rules, M, 100, expires_at=soon)
    add_lot(store, rules, M, 200, expires_at=soon)
    add_lot(store, rules, M, 400, expires_at=later)
    drive(store, rules, config, JOB, local(2026, 12, 1))
    rows = outbox_rows(store)
    assert [(r["params"]["points"], r["params"]["date"], r["params"]["stage"]) for r in rows] == [
        (300, "2026-12-08", "7d"), (400, "2026-12-19", "30d")]


def test_31_december_boundary_in_shanghai_versus_utc(store, rules, config):
    """A lot good through 31 Dec 2026 in Shanghai expires at 2026-12-31 16:00 UTC; the warning
    says 31 December (not 1 January), and the window is counted in local days."""
    add_members(store, M, language="en")
    add_lot(store, rules, M, 800, earned_on=date(2024, 2, 1))
    with store.unit_of_work(write=False) as uow:
        (lot,) = uow.members.spendable_lots(M, local(2026, 1, 1))
    assert lot.expires_at == datetime(2026, 12, 31, 16, 0, tzinfo=UTC)

    # 2026-11-30 16:30 UTC is already 1 December 00:30 in Shanghai: day 30 of the window.
    instant = datetime(2026, 11, 30, 16, 30, tzinfo=UTC)
    result = drive(store, rules, config, JOB, instant)
    assert result.run_key == "2026-12-01"
    (row,) = outbox_rows(store)
    assert row["params"]["date"] == "2026-12-31"
    text = render(row["template"], "en", row["params"])
    assert "31 December 2026" in text and "January" not in text
    # 00:30 local is in the quiet hours: held until 08:00 Shanghai (00:00 UTC).
    assert row["not_before"] == datetime(2026, 12, 1, 0, 0, tzinfo=UTC)


def test_utc_programme_counts_days_in_utc(store, config):
    utc_rules = ProgrammeRules(dataclasses.replace(config.programme, timezone="UTC"),
                               config.tiers)
    add_members(store, M, language="en")
    add_lot(store, utc_rules, M, 800, earned_on=date(2024, 2, 1))  # expires 2027-01-01 00:00Z
    utc_config = config.replace("programme", timezone="UTC")
    # The same instant is still 30 November in UTC: 31 days left, no warning yet.
    instant = datetime(2026, 11, 30, 16, 30, tzinfo=UTC)
    assert drive(store, utc_rules, utc_config, JOB, instant).counts.get("sms_30d") is None
    drive(store, utc_rules, utc_config, JOB, datetime(2026, 12, 1, 10, 0, tzinfo=UTC))
    (row,) = outbox_rows(store)
    assert row["params"]["date"] == "2026-12-31"
    assert "31 December 2026" in render(row["template"], "en", row["params"])


@pytest.mark.parametrize("hour,minute,released", [
    (22, 0, local(2026, 12, 2, 8, 0)),   # evening: held to tomorrow morning
    (3, 0, local(2026, 12, 1, 8, 0)),    # small hours: held to this morning
    (21, 0, local(2026, 12, 2, 8, 0)),   # the quiet hours start at 21:00 sharp
    (8, 0, None),                        # and end at 08:00 sharp
    (20, 59, None),
])
def test_quiet_hours_hold_messages_until_morning(store, rules, config, hour, minute, released):
    add_members(store, M)
    add_lot(store, rules, M, 100, earned_on=date(2024, 1, 5))
    now = local(2026, 12, 1, hour, minute)
    result = drive(store, rules, config, JOB, now)
    (row,) = outbox_rows(store)
    assert row["not_before"] == (released or now)
    assert result.counts.get("held_for_quiet_hours") == (1 if released else None)


def test_held_warning_is_released_at_the_end_of_the_quiet_hours(store, rules, config):
    add_members(store, M)
    add_lot(store, rules, M, 100, earned_on=date(2024, 1, 5))
    drive(store, rules, config, JOB, local(2026, 12, 1, 23, 30))
    with store.unit_of_work(write=False) as uow:
        assert uow.outbox.due_message_count(local(2026, 12, 2, 7, 59), "expiry_warning") == 0
        assert uow.outbox.due_message_count(local(2026, 12, 2, 8, 0), "expiry_warning") == 1


def test_opted_out_members_get_nothing(store, rules, config):
    add_members(store, M, opt_out=True)
    add_members(store, "13900139000")
    for m in (M, "13900139000"):
        add_lot(store, rules, m, 100, earned_on=date(2024, 1, 5))
    result = drive(store, rules, config, JOB, local(2026, 12, 1))
    assert result.counts["opted_out"] == 1 and result.counts["sms_30d"] == 1
    assert [r["msisdn"] for r in outbox_rows(store)] == ["13900139000"]
    assert [w["msisdn"] for w in warning_rows(store)] == ["13900139000"]


def test_voice_members_get_a_pending_voice_warning_and_no_sms(store, rules, config):
    add_members(store, M, channel="voice")
    add_lot(store, rules, M, 600, earned_on=date(2024, 1, 5))
    result = drive(store, rules, config, JOB, local(2026, 12, 1))
    assert result.counts["voice"] == 1
    assert outbox_rows(store) == []
    (w,) = warning_rows(store)
    assert (w["channel"], w["state"], w["points"], w["stage"], w["attempts"]) == (
        "voice", "pending", 600, "30d", 0)


def test_spent_expired_and_far_lots_are_ignored(store, rules, config):
    add_members(store, M, "13900139000")
    spent = add_lot(store, rules, M, 100, earned_on=date(2024, 1, 5))
    with store.unit_of_work() as uow:
        uow.members.take_from_lot(spent, 100)
    add_lot(store, rules, "13900139000", 100, earned_on=date(2025, 1, 5))
    result = drive(store, rules, config, JOB, local(2026, 12, 1))
    assert result.counts.get("batches") is None and outbox_rows(store) == []


def test_dry_run_writes_nothing_and_shows_samples(store, rules, config):
    add_members(store, M)
    add_members(store, "15800158000", language="en")
    for m in (M, "15800158000"):
        add_lot(store, rules, m, 250, earned_on=date(2024, 1, 5))
    result = drive(store, rules, config, JOB, local(2026, 12, 1), dry_run=True, samples=5)
    assert result.state == "dry-run" and result.counts["sms_30d"] == 2
    assert [(s.language, s.template) for s in result.samples] == [
        ("zh", "expiry_warning"), ("en", "expiry_warning")]
    assert outbox_rows(store) == [] and warning_rows(store) == [] and run_rows(store) == []


MANY = [f"1380000{n:04d}" for n in range(25)]


def _many(store, rules):
    add_members(store, *MANY)
    for m in MANY:
        add_lot(store, rules, m, 100, earned_on=date(2024, 1, 5))


def _assert_each_warned_once(store):
    rows = outbox_rows(store)
    assert sorted(r["msisdn"] for r in rows) == MANY
    assert len({r["dedupe_key"] for r in rows}) == len(MANY)
    assert sorted(w["msisdn"] for w in warning_rows(store)) == MANY


def test_restart_after_a_crash_between_batches_sends_nothing_twice(store, rules, config):
    _many(store, rules)
    now = local(2026, 12, 1)
    first = drive(store, rules, config, JOB, now, batch=10, max_steps=2)  # then "crashes"
    assert first.state == "stopped" and len(outbox_rows(store)) == 20
    (run,) = run_rows(store)
    assert run["state"] == "running"

    # Another process a minute later: the run looks alive, so it is left alone.
    assert drive(store, rules, config, JOB, now + timedelta(minutes=1)).state == "skipped"
    # Ten minutes without progress: the run is taken over and resumed after the last batch.
    resumed = drive(store, rules, config, JOB, now + timedelta(minutes=11), batch=10)
    assert resumed.state == "done" and resumed.resumed
    assert resumed.counts["sms_30d"] == 25  # counts carried over from the first process
    _assert_each_warned_once(store)


def test_crash_inside_a_batch_rolls_the_batch_back_and_a_retry_completes(store, rules, config,
                                                                      monkeypatch):
    _many(store, rules)
    now = local(2026, 12, 1)
    real = SqlOutbox.queue_messages_bulk
    calls = []

    def crash_on_second_batch(self, rows, at):
        calls.append(len(rows))
        real(self, rows, at)  # the batch's outbox rows are written... then the process dies
        if len(calls) == 2:
            raise ConnectionError("server closed the connection unexpectedly")

    monkeypatch.setattr(SqlOutbox, "queue_messages_bulk", crash_on_second_batch)
    with pytest.raises(ConnectionError):
        drive(store, rules, config, JOB, now, batch=10)
    monkeypatch.setattr(SqlOutbox, "queue_messages_bulk", real)
    assert len(outbox_rows(store)) == 10 and len(warning_rows(store)) == 10  # batch 2 undone
    (run,) = run_rows(store)
    assert run["state"] == "failed"

    assert drive(store, rules, config, JOB, now + timedelta(minutes=5)).state == "skipped"
    retried = drive(store, rules, config, JOB, now + timedelta(minutes=31), batch=10)
    assert retried.state == "done" and retried.resumed
    _assert_each_warned_once(store)
    # And a forced full re-run finds everyone warned already.
    again = drive(store, rules, config, JOB, now + timedelta(hours=1), force=True)
    assert again.counts["already_warned"] == 25 and "sms_30d" not in again.counts
    _assert_each_warned_once(store)


def test_step_is_pure_and_bounded(store, rules, config):
    """One step reads one page of members: the cursor is the last msisdn of the page."""
    _many(store, rules)
    with store.unit_of_work() as uow:
        step = expiry_warnings(uow, rules, local(2026, 12, 1), config.jobs, None, dry_run=True,
                               batch=10)
    assert step.cursor == MANY[9] and step.counts["members"] == 10


def test_bulk_inserts_skip_rows_written_already_and_keep_text_exact(store):
    now = local(2026, 12, 1)
    tricky = {"name": 'a\\b\t"c"\n会员', "points": 5}
    rows = [dict(msisdn=f"1500000000{n}", language="zh", template="expiry_warning",
                 params=tricky, kind="expiry_warning", dedupe_key=f"k{n}", not_before=now)
            for n in range(3)]
    warning = dict(msisdn="15000000000", expires_at=local(2026, 12, 31, 0, 0), stage="30d",
                   points=5, channel="sms", state="queued")
    with store.unit_of_work() as uow:
        uow.outbox.queue_messages_bulk(rows[:2], now)
        uow.jobs.add_expiry_warnings([warning], now)
    with store.unit_of_work() as uow:  # one new row among rows written already
        uow.outbox.queue_messages_bulk(rows, now)
        uow.jobs.add_expiry_warnings([warning, dict(warning, stage="7d")], now)
    got = outbox_rows(store)
    assert [r["dedupe_key"] for r in got] == ["k0", "k1", "k2"]
    assert all(r["params"] == tricky and r["not_before"] == now and r["state"] == "queued"
               and r["attempts"] == 0 and r["body"] is None for r in got)
    assert [(w["stage"], w["expires_at"]) for w in warning_rows(store)] == [
        ("30d", local(2026, 12, 31, 0, 0)), ("7d", local(2026, 12, 31, 0, 0))]
