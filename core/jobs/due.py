"""When each job is due: the pure half of the job timers (``ops.scheduler`` keeps the timers).

A job runs once per period (a day, or a month for monthly jobs) at a local wall-clock time in
the programme's zone; each period's run has a key (``run_key``) that the claim in the database
makes happen once.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from core.config import JobsConfig
from core.jobs.base import Job
from core.jobs.schedule import last_occurrence, next_occurrence, run_key


def next_run_at(job: Job, config: JobsConfig, after: datetime, zone: ZoneInfo) -> datetime:
    """The instant of the job's first scheduled run after ``after``."""
    return next_occurrence(after, zone, job.at(config), job.day_of_month(config))


def key_of_run_at(job: Job, at: datetime, zone: ZoneInfo) -> str:
    """The key of the run scheduled at ``at``."""
    return run_key(at, zone, job.monthly)


def current_run_due(job: Job, config: JobsConfig, now: datetime, zone: ZoneInfo) -> str | None:
    """The key of the current period's run once its time has come, else None: a run that may
    have been missed (the server was down at the time) or left unfinished. The claim decides
    whether it is done already."""
    last = last_occurrence(now, zone, job.at(config), job.day_of_month(config))
    key = run_key(last, zone, job.monthly)
    return key if key == run_key(now, zone, job.monthly) else None
