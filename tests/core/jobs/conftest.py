"""Helpers for the job tests: members and lots with chosen expiry instants, a synchronous driver,
a synchronous stand-in for the database service (for ``task.Clock`` scheduler tests)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from twisted.internet.defer import fail, succeed

from core.domain import LedgerKind
from core.jobs.runs import run_job
from core.jobs.schedule import run_key
from core.rules import expiry_for
from core.store.tables import expiry_warnings, job_runs, outbox

SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(y, mo, d, h=10, mi=0, zone=SHANGHAI) -> datetime:
    """A local wall-clock time as an aware UTC instant."""
    return datetime(y, mo, d, h, mi, tzinfo=zone).astimezone(UTC)


def add_members(store, *msisdns, language="zh", channel="sms", opt_out=False,
                tier="standard", tier_valid_until=None):
    with store.unit_of_work() as uow:
        uow.members.upsert_members([
            dict(msisdn=m, name=f"会员{m[-4:]}", language=language, tier_code=tier,
                 tier_valid_until=tier_valid_until, warning_opt_out=opt_out,
                 warning_channel=channel, pin_failures=0,
                 created_at=datetime(2024, 1, 1, tzinfo=UTC))
            for m in msisdns])


def add_lot(store, rules, msisdn, points, *, earned_on=date(2024, 5, 1), expires_at=None,
            source="bill"):
    """A lot (with its credit in the ledger) expiring at ``expires_at`` or by the rules."""
    expires_at = expires_at or expiry_for(earned_on, rules.programme)
    with store.unit_of_work() as uow:
        lot_id = uow.members.add_lot(msisdn=msisdn, amount=points, source=source,
                                     earned_on=earned_on, expires_at=expires_at, reference=None,
                                     now=datetime(2024, 6, 1, tzinfo=UTC))
        uow.members.add_ledger(msisdn=msisdn, kind=LedgerKind.CREDIT, amount=points, reason=source,
                               channel="import", now=datetime(2024, 6, 1, tzinfo=UTC))
    return lot_id


def make_runner(store, rules):
    def run(use_case, *args, write=True, **kwargs):
        with store.unit_of_work(write=write) as uow:
            return use_case(uow, rules, *args, **kwargs)
    return run


def drive(store, rules, config, job, now, **kwargs):
    """Run a job to its end at the fixed instant ``now`` (as a scheduled run would)."""
    monthly = job == "auto-redeem"
    key = kwargs.pop("run_key", None) or run_key(now, rules.zone, monthly)
    clock = kwargs.pop("clock", None) or (lambda: now)
    return run_job(make_runner(store, rules), job, config.jobs, clock, run_key=key, **kwargs)


def outbox_rows(store, **where):
    with store.unit_of_work(write=False) as uow:
        stmt = select(outbox).order_by(outbox.c.id)
        for key, value in where.items():
            stmt = stmt.where(outbox.c[key] == value)
        rows = [dict(r._mapping) for r in uow.conn.execute(stmt)]
    for row in rows:
        row["params"] = json.loads(row["params"])
    return rows


def warning_rows(store):
    with store.unit_of_work(write=False) as uow:
        return [dict(r._mapping) for r in uow.conn.execute(
            select(expiry_warnings).order_by(expiry_warnings.c.id))]


def run_rows(store):
    with store.unit_of_work(write=False) as uow:
        return [dict(r._mapping) for r in uow.conn.execute(select(job_runs).order_by(
            job_runs.c.id))]


def count(store, table) -> int:
    with store.unit_of_work(write=False) as uow:
        return uow.conn.execute(select(func.count()).select_from(table)).scalar_one()


class SyncDB:
    """``DatabaseService.run`` done at once on the calling thread (for ``task.Clock`` tests):
    the use cases and the store are real, only the thread hop is skipped."""

    def __init__(self, store, rules) -> None:
        self.store = store
        self.rules = rules
        self.calls: list[str] = []
        self.fail_on: set[str] = set()

    def run(self, use_case, *args, write=True, **kwargs):
        self.calls.append(use_case.__name__)
        if use_case.__name__ in self.fail_on:
            return fail(RuntimeError(f"{use_case.__name__} failed (test)"))
        try:
            with self.store.unit_of_work(write=write) as uow:
                return succeed(use_case(uow, self.rules, *args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - handed to the caller as a failed Deferred
            return fail(exc)


@pytest.fixture
def sync_db(store, rules):
    return SyncDB(store, rules)
