"""Runs claimed once in the database, and driven step by step.

A run is a ``job_runs`` row, unique per (job, run_key): the run key is the local date for the
daily jobs and YYYY-MM for the monthly one. Whoever inserts the row runs the job; a process that
finds the row skips, unless the run it records can be taken over:

- ``running`` with no progress for ``stale_after`` (its process died): resumed where its last
  committed batch ended;
- ``interrupted`` (its process was stopped): resumed at once;
- ``failed``: retried from where it stopped after ``retry_failed_after``, at most
  ``max_attempts`` times (or at once with ``force``);
- ``done``: only with ``force`` (``loyalty jobs run NAME --force``), from the start.

On PostgreSQL the claim also takes ``pg_try_advisory_xact_lock`` on the job's name, so two
processes never even race on the takeover of a stale run. While a run is going, its progress
(owner, cursor, counts, heartbeat) is stored in ``job_runs.summary`` in the same transaction as
each batch's writes, after checking (under the row's lock) that the run is still ours: a process
that hung and lost its run cannot write another batch. Resuming is safe because every row a job
writes is idempotent (unique warning rows and outbox dedupe keys, redemption request ids).

A batch that fails is done again item by item, and an item that still fails is set aside
(``core.jobs.isolate``): the run goes on.

The use cases here are pure; :func:`run_job` drives a run synchronously (CLI, tests, bench)
through any ``run(use_case, *args, **kwargs)`` callable that opens a unit of work per call. The
Twisted scheduler drives the same use cases through ``DatabaseService.run``.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from core.config import JobsConfig
from core.jobs.base import Sample, Step
from core.jobs.isolate import can_isolate, step_one_by_one
from core.jobs.records import JobRun
from core.jobs.registry import get_job
from core.ports import UnitOfWork
from core.rules import ProgrammeRules

STALE_AFTER = timedelta(minutes=10)
RETRY_FAILED_AFTER = timedelta(minutes=30)
MAX_ATTEMPTS = 3

RUNNING, DONE, FAILED, INTERRUPTED = "running", "done", "failed", "interrupted"


class LostClaim(RuntimeError):
    """The run was taken over by another process (ours looked dead); stop without writing."""


def new_owner(process_name: str = "") -> str:
    """Who runs a job (kept in the run's summary): host, pid and, with several processes on
    one database, the process's ``[process] name``."""
    named = f"{process_name}@" if process_name else ""
    return f"{named}{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Claim:
    run_id: int
    job: str
    run_key: str
    owner: str
    cursor: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    attempt: int = 1
    resumed: bool = False


@dataclass(frozen=True)
class StepReport:
    claim: Claim
    done: bool
    step: Step


def _summary(claim: Claim, heartbeat: datetime, **extra: Any) -> str:
    return json.dumps({"owner": claim.owner, "cursor": claim.cursor, "counts": claim.counts,
                       "attempt": claim.attempt, "heartbeat": heartbeat.isoformat(), **extra},
                      ensure_ascii=False)


def _merge(total: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    merged = dict(total)
    for key, value in more.items():
        merged[key] = merged.get(key, 0) + value
    return merged


def _takeover(run: JobRun, now: datetime, *, force: bool, stale_after: timedelta,
              retry_failed_after: timedelta, max_attempts: int) -> bool:
    summary = run.summary
    if run.state == RUNNING:
        beat = summary.get("heartbeat")
        last = datetime.fromisoformat(beat) if beat else run.started_at
        return now - last >= stale_after
    if run.state == INTERRUPTED:
        return True
    if run.state == FAILED:
        return force or (summary.get("attempt", 1) < max_attempts and run.finished_at is not None
                         and now - run.finished_at >= retry_failed_after)
    return force  # done


def claim_run(uow: UnitOfWork, rules: ProgrammeRules, job: str, run_key: str, now: datetime, *,
              owner: str, force: bool = False, stale_after: timedelta = STALE_AFTER,
              retry_failed_after: timedelta = RETRY_FAILED_AFTER,
              max_attempts: int = MAX_ATTEMPTS) -> Claim | None:
    """Claim (or take over) the run ``(job, run_key)``; None when it is not ours to do."""
    get_job(job)
    if not uow.jobs.try_job_lock(job):
        return None
    claim = Claim(0, job, run_key, owner)
    run_id = uow.jobs.insert_job_run(job, run_key, now, _summary(claim, now))
    if run_id is not None:
        return replace(claim, run_id=run_id)
    run = uow.jobs.get_job_run(job, run_key, for_update=True)
    if run is None or not _takeover(run, now, force=force, stale_after=stale_after,
                                    retry_failed_after=retry_failed_after,
                                    max_attempts=max_attempts):
        return None
    if run.state == DONE:  # forced: a new run from the start
        claim = replace(claim, run_id=run.id)
        uow.jobs.update_job_run(run.id, state=RUNNING, started_at=now, finished_at=None,
                                summary=_summary(claim, now))
    else:
        claim = replace(claim, run_id=run.id, cursor=run.summary.get("cursor"),
                        counts=run.summary.get("counts", {}),
                        attempt=run.summary.get("attempt", 1) + 1, resumed=True)
        uow.jobs.update_job_run(run.id, state=RUNNING, finished_at=None,
                                summary=_summary(claim, now, resumed_from=run.state))
    return claim


def run_step(uow: UnitOfWork, rules: ProgrammeRules, claim: Claim, config: JobsConfig,
             now: datetime, *, samples: int = 0, batch: int | None = None) -> StepReport:
    """Do the next batch of a claimed run; the unit of work commits it with the run's progress
    (and, after the last batch, the run's end)."""
    run = uow.jobs.get_job_run_by_id(claim.run_id, for_update=True)
    if run is None or run.state != RUNNING or run.summary.get("owner") != claim.owner:
        raise LostClaim(f"run {claim.job}/{claim.run_key} was taken over")
    kwargs = {} if batch is None else {"batch": batch}
    job = get_job(claim.job)
    try:
        # The run's row stays locked (ours) when the batch's savepoint is rolled back.
        with uow.savepoint():
            step = job.step(uow, rules, now, config, claim.cursor, samples=samples, **kwargs)
    except Exception as exc:
        if not can_isolate(job, exc):
            raise
        # One item's failure must not stop the run: the batch again, item by item.
        step = step_one_by_one(uow, rules, job, now, config, claim.cursor, claim.run_key,
                               batch=batch, samples=samples)
    claim = replace(claim, cursor=step.cursor, counts=_merge(claim.counts, step.counts))
    if step.cursor is None:
        uow.jobs.update_job_run(claim.run_id, state=DONE, finished_at=now,
                                summary=_summary(claim, now))
    else:
        uow.jobs.update_job_run(claim.run_id, summary=_summary(claim, now))
    return StepReport(claim, step.cursor is None, step)


def end_run(uow: UnitOfWork, rules: ProgrammeRules, claim: Claim, now: datetime, *, state: str,
            error: str | None = None) -> bool:
    """Record that a run stopped before its end (``failed`` or ``interrupted``)."""
    run = uow.jobs.get_job_run_by_id(claim.run_id, for_update=True)
    if run is None or run.state != RUNNING or run.summary.get("owner") != claim.owner:
        return False
    extra = {"error": error[:500]} if error else {}
    uow.jobs.update_job_run(claim.run_id, state=state, finished_at=now,
                            summary=_summary(claim, now, **extra))
    return True


def dry_run_step(uow: UnitOfWork, rules: ProgrammeRules, job: str, config: JobsConfig,
                 now: datetime,
                 cursor: str | None, *, samples: int = 0, batch: int | None = None) -> Step:
    """One batch of what a run at ``now`` would do; nothing is written (run it read-only)."""
    kwargs = {} if batch is None else {"batch": batch}
    return get_job(job).step(uow, rules, now, config, cursor, dry_run=True, samples=samples,
                             **kwargs)


def job_runs(uow: UnitOfWork, rules: ProgrammeRules, *, limit: int = 20) -> list[JobRun]:
    return uow.jobs.recent_job_runs(limit)


# --- a synchronous driver ------------------------------------------------------------------


@dataclass
class RunResult:
    job: str
    run_key: str
    state: str  # done, skipped, failed, stopped (max_steps), dry-run
    counts: dict[str, int] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    resumed: bool = False
    error: str | None = None


def run_job(run: Callable[..., Any], job: str, config: JobsConfig, clock: Callable[[], datetime],
            *, run_key: str, owner: str | None = None, force: bool = False,
            dry_run: bool = False, samples: int = 0, batch: int | None = None,
            max_steps: int | None = None, stale_after: timedelta = STALE_AFTER) -> RunResult:
    """Run a job to its end in this thread: claim, steps, end. ``run(use_case, *args,
    **kwargs)`` runs a use case in a fresh unit of work (``Context.run``, a test helper...);
    ``clock()`` is the time of each step. ``max_steps`` stops early as a crash would (tests)."""
    result = RunResult(job, run_key, "dry-run" if dry_run else "skipped")
    if dry_run:
        cursor: str | None = None
        while True:
            step = run(dry_run_step, job, config, clock(), cursor,
                       samples=max(0, samples - len(result.samples)), batch=batch)
            result.steps += 1
            result.counts = _merge(result.counts, step.counts)
            result.samples += step.samples
            result.events += step.events
            cursor = step.cursor
            if cursor is None:
                return result
    claim = run(claim_run, job, run_key, clock(), owner=owner or new_owner(), force=force,
                stale_after=stale_after)
    if claim is None:
        return result
    result.resumed = claim.resumed
    try:
        while True:
            if max_steps is not None and result.steps >= max_steps:
                result.state = "stopped"
                result.counts = claim.counts
                return result
            report = run(run_step, claim, config, clock(),
                         samples=max(0, samples - len(result.samples)), batch=batch)
            claim = report.claim
            result.steps += 1
            result.samples += report.step.samples
            result.events += report.step.events
            if report.done:
                result.state = DONE
                result.counts = claim.counts
                return result
    except LostClaim as lost:
        result.state, result.error = "lost", str(lost)
        return result
    except Exception as exc:
        result.state, result.error, result.counts = FAILED, f"{exc}", claim.counts
        run(end_run, claim, clock(), state=FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
