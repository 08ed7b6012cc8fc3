"""Runs are claimed once in the database: races between processes and threads, takeovers of
dead runs, retries of failed ones, forced re-runs."""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import pytest

from core.cli import main as loyalty
from core.jobs.runs import (
    DONE,
    FAILED,
    INTERRUPTED,
    LostClaim,
    claim_run,
    end_run,
    run_step,
)
from core.store.tables import outbox
from tests.core.jobs.conftest import (
    add_lot,
    add_members,
    count,
    drive,
    local,
    make_runner,
    run_rows,
)

NOW = local(2026, 12, 1)
MEMBERS = [f"1390000{n:04d}" for n in range(40)]


@pytest.fixture
def warned_members(store, rules):
    add_members(store, *MEMBERS)
    for m in MEMBERS:
        add_lot(store, rules, m, 100, earned_on=date(2024, 1, 5))


def test_two_processes_run_the_job_once(store, database_url, warned_members):
    start_at = time.time() + 2.0
    procs = [subprocess.Popen(
        [sys.executable, "-m", "tests.core.jobs.run_worker", database_url, "expiry-warnings",
         "2026-12-01", NOW.isoformat(), str(start_at)], stdout=subprocess.PIPE, text=True)
        for _ in range(4)]
    outcomes = sorted(tuple(p.communicate(timeout=120)[0].split()) for p in procs)
    assert all(p.returncode == 0 for p in procs)
    assert outcomes == [("done", "40"), ("skipped", "0"), ("skipped", "0"), ("skipped", "0")]
    assert count(store, outbox) == 40
    (run,) = run_rows(store)
    assert (run["job"], run["run_key"], run["state"]) == ("expiry-warnings", "2026-12-01", DONE)


def test_threads_racing_for_a_claim_get_one(store, rules, warned_members):
    run = make_runner(store, rules)

    def attempt(i):
        return run(claim_run, "expiry-warnings", "2026-12-01", NOW, owner=f"t{i}")

    with ThreadPoolExecutor(max_workers=6) as pool:
        claims = [c for c in pool.map(attempt, range(12)) if c is not None]
    assert len(claims) == 1


def test_claim_lifecycle(store, rules, config):
    run = make_runner(store, rules)
    job, key = "expire-points", "2026-12-01"
    a = run(claim_run, job, key, NOW, owner="a")
    assert a is not None and not a.resumed
    assert run(claim_run, job, key, NOW + timedelta(minutes=9), owner="b") is None
    # Nine minutes of silence is not death; ten is: b takes the run over...
    b = run(claim_run, job, key, NOW + timedelta(minutes=10), owner="b")
    assert b is not None and b.resumed and b.attempt == 2
    # ...and a, waking up, can write nothing more.
    with pytest.raises(LostClaim):
        run(run_step, a, config.jobs, NOW + timedelta(minutes=11))
    assert run(end_run, a, NOW, state=FAILED) is False
    report = run(run_step, b, config.jobs, NOW + timedelta(minutes=11))
    assert report.done
    assert run(claim_run, job, key, NOW + timedelta(days=1), owner="c") is None  # done
    forced = run(claim_run, job, key, NOW + timedelta(days=1), owner="c", force=True)
    assert forced is not None and not forced.resumed and forced.cursor is None


def test_interrupted_runs_resume_at_once_and_failed_ones_after_a_pause(store, rules):
    run = make_runner(store, rules)
    a = run(claim_run, "tier-review", "2026-12-01", NOW, owner="a")
    assert run(end_run, a, NOW, state=INTERRUPTED)
    b = run(claim_run, "tier-review", "2026-12-01", NOW, owner="b")
    assert b is not None and b.resumed
    assert run(end_run, b, NOW, state=FAILED, error="boom")
    assert run_rows(store)[0]["state"] == FAILED
    assert run(claim_run, "tier-review", "2026-12-01", NOW + timedelta(minutes=29),
               owner="c") is None
    c = run(claim_run, "tier-review", "2026-12-01", NOW + timedelta(minutes=30), owner="c")
    assert c is not None and c.attempt == 3
    assert run(end_run, c, NOW + timedelta(minutes=30), state=FAILED, error="boom")
    # Three attempts: no more automatic retries, only a forced run.
    assert run(claim_run, "tier-review", "2026-12-01", NOW + timedelta(hours=2),
               owner="d") is None
    assert run(claim_run, "tier-review", "2026-12-01", NOW + timedelta(hours=2), owner="d",
               force=True) is not None


def test_run_keys_are_per_period(store, rules, config, warned_members):
    assert drive(store, rules, config, "expiry-warnings", NOW).state == "done"
    assert drive(store, rules, config, "expiry-warnings", NOW + timedelta(hours=3)).state == \
        "skipped"
    assert drive(store, rules, config, "expiry-warnings", NOW + timedelta(days=1)).state == "done"
    assert drive(store, rules, config, "auto-redeem", NOW).run_key == "2026-12"
    assert [(r["job"], r["run_key"]) for r in run_rows(store)] == [
        ("expiry-warnings", "2026-12-01"), ("expiry-warnings", "2026-12-02"),
        ("auto-redeem", "2026-12")]


def test_cli_list_run_dry_run_and_as_of(store, rules, database_url, monkeypatch, capsys,
                                        warned_members):
    monkeypatch.setenv("LOYALTY_DATABASE_URL", database_url)
    assert loyalty(["jobs", "run", "expiry-warnings", "--as-of", "2026-12-01",
                    "--samples", "2"]) == 0
    out = capsys.readouterr().out
    assert "expiry-warnings 2026-12-01 as of 2026-12-01 10:00 CST: dry run, nothing written" \
        in out
    assert "sms_30d" in out and "40" in out
    assert out.count("2026年12月31日到期") == 2 and "139****0000" in out
    assert count(store, outbox) == 0 and run_rows(store) == []

    assert loyalty(["jobs", "run", "expire-points", "--dry-run"]) == 0
    assert "dry run, nothing written" in capsys.readouterr().out
    assert loyalty(["jobs", "run", "tier-review"]) == 0
    assert "tier-review" in capsys.readouterr().out
    assert loyalty(["jobs", "run", "tier-review"]) == 0
    assert "skipped" in capsys.readouterr().out
    assert loyalty(["jobs", "list"]) == 0
    out = capsys.readouterr().out
    assert "expiry-warnings  daily at 10:00" in out and "auto-redeem" in out
    assert "never run" in out and " done at " in out


def test_every_job_notice_kind_is_held_in_the_quiet_hours_by_the_sender_too():
    from core.jobs import auto_redeem, expiry_warnings, tier_review
    from core.jobs.schedule import NOTICE_KINDS

    assert {auto_redeem.KIND, expiry_warnings.KIND, tier_review.KIND} == NOTICE_KINDS
