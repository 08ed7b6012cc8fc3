"""What every job is made of: steps over batches, their results, and the job table.

A job is a function ``step(uow, rules, now, config, cursor, *, dry_run, samples)`` that does
one batch starting after ``cursor`` and returns a :class:`Step` with the next cursor (``None``
when the job is done). A step never commits: the run driver (``core.jobs.runs``) commits the
batch's writes together with the run's progress, so a crash loses at most the batch in flight
and a resumed run starts after the last committed batch. A step calls the core's use cases
with its own unit of work: they never commit either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.config import JobsConfig
from core.domain import mask_msisdn
from core.jobs.schedule import release_time
from core.ports import UnitOfWork
from core.rules import ProgrammeRules


@dataclass(frozen=True)
class Sample:
    """A message a run queued (or would queue): rendered by the CLI for ``--dry-run``."""

    msisdn: str
    language: str
    template: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Step:
    cursor: str | None  # where the next step starts; None when the job is done
    counts: dict[str, int] = field(default_factory=dict)
    samples: tuple[Sample, ...] = ()
    # Things worth a log line each (auto-redeem deductions...): dicts of keyword fields.
    events: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Job:
    name: str
    title: str
    step: Callable[..., Step]
    at_key: str  # the JobsConfig field holding the local time
    monthly: bool = False
    batch: int = field(kw_only=True)  # items per step unless a run says otherwise

    def at(self, config: JobsConfig) -> str:
        return getattr(config, self.at_key)

    def day_of_month(self, config: JobsConfig) -> int | None:
        return config.auto_redeem_day if self.monthly else None

    def schedule_text(self, config: JobsConfig) -> str:
        if self.monthly:
            return f"monthly on day {config.auto_redeem_day} at {self.at(config)}"
        return f"daily at {self.at(config)}"


def add(counts: dict[str, int], key: str, n: int = 1) -> None:
    counts[key] = counts.get(key, 0) + n


def queue_notice(uow: UnitOfWork, rules: ProgrammeRules, config: JobsConfig, msisdn: str,
                 now: datetime, *,
                 kind: str, template: str, params: dict[str, Any], dedupe_key: str,
                 optional: bool = False) -> bool:
    """Queue a job's SMS notice, held until the quiet hours end. An ``optional`` notice (not
    about the member's own order or request: tier changes, campaigns) is not queued for a
    member who opted out of them (``TD``); returns whether it was queued."""
    from core.service_desk import queue_sms

    if optional:
        member = uow.members.get_member(msisdn)
        if member is not None and member.warning_opt_out:
            return False

    queue_sms(uow, rules, msisdn, now, kind=kind, template=template, params=params,
              dedupe_key=dedupe_key, not_before=release_time(now, rules.zone, config))
    return True


def masked(msisdn: str) -> str:
    return mask_msisdn(msisdn)

