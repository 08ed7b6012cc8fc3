"""The scheduler on a controllable clock (``task.Clock``): local schedule times, failures that
do not stop the schedule, catch-up at start, shutdown in the middle of a run and its resumption.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.logger import globalLogPublisher

from core.jobs.registry import JOBS
from core.jobs.schedule import last_occurrence, next_occurrence
from core.metrics import Metrics
from core.store.tables import outbox
from ops.scheduler import JobsService, jobs_service
from tests.core.jobs.conftest import (
    SHANGHAI,
    SyncDB,
    add_lot,
    add_members,
    count,
    local,
    run_rows,
)

MEMBERS = [f"1370000{n:04d}" for n in range(25)]


def clock_at(instant: datetime) -> task.Clock:
    clock = task.Clock()
    clock.advance(instant.timestamp())
    return clock


def advance_to(clock: task.Clock, instant: datetime) -> None:
    clock.advance(instant.timestamp() - clock.seconds())


def runs_metric(metrics: Metrics, name: str, job: str) -> float:
    return metrics.registry.get_sample_value(f"loyalty_{name}_total", {"job": job}) or 0.0


@pytest.fixture
def members(store, rules):
    add_members(store, *MEMBERS)
    for m in MEMBERS:
        add_lot(store, rules, m, 100, earned_on=date(2024, 1, 5))


@pytest.fixture
def logged():
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def test_schedule_arithmetic():
    z = SHANGHAI
    assert next_occurrence(local(2026, 11, 30, 23), z, "00:10") == local(2026, 12, 1, 0, 10)
    assert next_occurrence(local(2026, 12, 1, 0, 10), z, "00:10") == local(2026, 12, 2, 0, 10)
    assert next_occurrence(local(2026, 12, 15), z, "09:00", 1) == local(2027, 1, 1, 9, 0)
    assert next_occurrence(local(2026, 12, 1, 8, 59), z, "09:00", 1) == local(2026, 12, 1, 9, 0)
    assert last_occurrence(local(2026, 12, 15), z, "09:00", 1) == local(2026, 12, 1, 9, 0)
    assert last_occurrence(local(2026, 12, 1, 9, 59), z, "10:00") == local(2026, 11, 30, 10, 0)
    # 10:00 in Shanghai is 02:00 UTC.
    assert next_occurrence(datetime(2026, 12, 1, 1, 0, tzinfo=UTC), z, "10:00") == \
        datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


def test_jobs_fire_at_their_local_times_and_reschedule(store, rules, config, members):
    clock = clock_at(local(2026, 11, 30, 23, 0))
    metrics = Metrics()
    db = SyncDB(store, rules)
    service = JobsService(config, db, metrics, clock, catch_up=False)
    service.startService()
    assert service.next_runs == {
        "expire-points": local(2026, 12, 1, 0, 10), "tier-review": local(2026, 12, 1, 2, 0),
        "auto-redeem": local(2026, 12, 1, 9, 0), "expiry-warnings": local(2026, 12, 1, 10, 0)}
    advance_to(clock, local(2026, 12, 1, 9, 59))
    assert [r["job"] for r in run_rows(store)] == ["expire-points", "tier-review", "auto-redeem"]
    assert count(store, outbox) == 0
    advance_to(clock, local(2026, 12, 1, 10, 0))
    assert count(store, outbox) == len(MEMBERS)
    assert all(r["state"] == "done" for r in run_rows(store))
    assert runs_metric(metrics, "job_runs", "expiry-warnings") == 1
    assert service.next_runs["expiry-warnings"] == local(2026, 12, 2, 10, 0)
    assert service.next_runs["auto-redeem"] == local(2027, 1, 1, 9, 0)

    advance_to(clock, local(2026, 12, 2, 10, 0))
    assert [(r["job"], r["run_key"]) for r in run_rows(store)][-1] == (
        "expiry-warnings", "2026-12-02")
    assert runs_metric(metrics, "job_runs", "expiry-warnings") == 2
    assert count(store, outbox) == len(MEMBERS)  # warned already on the 1st
    service.stopService()
    assert not clock.getDelayedCalls()


def test_a_failure_is_logged_and_counted_and_the_schedule_goes_on(store, rules, config,
                                                                  members, logged):
    clock = clock_at(local(2026, 12, 1, 9, 0))
    metrics = Metrics()
    db = SyncDB(store, rules)
    service = JobsService(config, db, metrics, clock, jobs=None, catch_up=False)
    service.startService()
    db.fail_on = {"run_step"}
    advance_to(clock, local(2026, 12, 1, 10, 0))
    assert runs_metric(metrics, "job_failures", "expiry-warnings") == 1
    assert runs_metric(metrics, "job_runs", "expiry-warnings") == 0
    (run,) = [r for r in run_rows(store) if r["job"] == "expiry-warnings"]
    assert run["state"] == "failed" and "run_step failed" in run["summary"]
    failures = [e for e in logged if e.get("log_failure") is not None
                and e.get("job") == "expiry-warnings"]
    assert failures and failures[0]["run_key"] == "2026-12-01"
    assert service.next_runs["expiry-warnings"] == local(2026, 12, 2, 10, 0)

    db.fail_on = set()
    advance_to(clock, local(2026, 12, 2, 10, 0))
    assert runs_metric(metrics, "job_runs", "expiry-warnings") == 1
    assert count(store, outbox) == len(MEMBERS)
    service.stopService()


def test_catch_up_at_start_and_a_second_process_runs_nothing(store, rules, config, members):
    clock = clock_at(local(2026, 12, 1, 11, 0))  # the server was down at 10:00
    db = SyncDB(store, rules)
    first = JobsService(config, db, Metrics(), clock)
    first.startService()
    assert sorted((r["job"], r["run_key"], r["state"]) for r in run_rows(store)) == [
        ("auto-redeem", "2026-12", "done"), ("expire-points", "2026-12-01", "done"),
        ("expiry-warnings", "2026-12-01", "done"), ("tier-review", "2026-12-01", "done")]
    second = JobsService(config, SyncDB(store, rules), Metrics(), clock)
    second.startService()
    clock.advance(300)  # both recheck: nothing is due any more
    assert len(run_rows(store)) == 4 and count(store, outbox) == len(MEMBERS)
    first.stopService()
    second.stopService()


class SlowDB(SyncDB):
    """Each use case answers ``delay`` seconds later on the clock (a busy database)."""

    def __init__(self, store, rules, clock, delay=1.0):
        super().__init__(store, rules)
        self.clock = clock
        self.delay = delay

    def run(self, use_case, *args, **kwargs):
        result = super().run(use_case, *args, **kwargs)
        later = Deferred()
        self.clock.callLater(self.delay, lambda: result.chainDeferred(later))
        return later


def test_shutdown_mid_run_then_resume_at_next_start(store, rules, config, members):
    clock = clock_at(local(2026, 12, 1, 9, 59))
    db = SlowDB(store, rules, clock)
    jobs = {"expiry-warnings": JOBS["expiry-warnings"]}
    service = JobsService(config, db, Metrics(), clock, jobs=jobs, catch_up=False, batch=10)
    service.startService()
    advance_to(clock, local(2026, 12, 1, 10, 0))
    clock.pump([1])  # claimed; the first batch of 10 is being written
    assert count(store, outbox) == 10
    stopped = service.stopService()
    assert not stopped.called
    clock.pump([1] * 5)
    assert stopped.called
    (run,) = run_rows(store)
    assert run["state"] == "interrupted"
    assert count(store, outbox) == 10  # the batch in flight finished; nothing after it

    restarted = JobsService(config, db, Metrics(), clock, jobs=jobs, batch=10)
    restarted.startService()  # catch-up: the interrupted run resumes at once
    clock.pump([1] * 10)
    (run,) = run_rows(store)
    assert run["state"] == "done" and '"resumed_from"' not in run["summary"]
    assert count(store, outbox) == len(MEMBERS)
    restarted.stopService()


def test_disabled_jobs_schedule_nothing(store, rules, config):
    clock = clock_at(local(2026, 12, 1, 9, 0))
    service = JobsService(config.replace("jobs", enabled=False), SyncDB(store, rules),
                          Metrics(), clock)
    service.startService()
    assert not clock.getDelayedCalls()
    clock.advance(86400)
    assert run_rows(store) == []


def test_jobs_service_tree(store, rules, config):
    clock = clock_at(local(2026, 12, 1, 9, 0))
    tree = jobs_service(config, SyncDB(store, rules), Metrics(), clock)
    assert [s.name for s in tree] == ["job-scheduler"]
    with_voice = jobs_service(config, SyncDB(store, rules), Metrics(), clock, dialer=object())
    assert sorted(s.name for s in with_voice) == ["job-scheduler", "voice-warnings"]
    assert timedelta(0) < (local(2026, 12, 1, 10) - local(2026, 12, 1, 9))
