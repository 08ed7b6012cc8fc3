"""A batch of a job that fails is done again one item at a time, and an item that still fails
is set aside: counted (``set_aside``), recorded in ``job_set_aside`` (``loyalty queues list``)
and logged once, while the run goes on with the next item. So one member's corrupt data costs
that member's notice, not everybody's.

An item is what the job's cursor steps over (a member for the expiry warnings and the tier
review, a subscription for the automatic redemption); the item's key is also the cursor
after it. Points expiry works through whatever lots have lapsed, with no cursor to step past
one: a batch of it that fails still fails the run (retried later, see ``core.jobs.runs``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from core.config import JobsConfig
from core.jobs.base import Job, Step, add, masked
from core.ports import UnitOfWork
from core.rules import ProgrammeRules, qualifying_window_start


def _next_member(uow: UnitOfWork, rules: ProgrammeRules, now: datetime,
                 cursor: str | None) -> str | None:
    return uow.jobs.member_page_bound(cursor or "", 1)[0]


def _next_candidate(uow: UnitOfWork, rules: ProgrammeRules, now: datetime,
                    cursor: str | None) -> str | None:
    rows = uow.jobs.tier_review_page(cursor or "", 1, qualifying_window_start(rules.today(now)),
                                     rules.programme.qualifying_sources)
    return rows[0].msisdn if rows else None


def _next_subscription(uow: UnitOfWork, rules: ProgrammeRules, now: datetime,
                       cursor: str | None) -> str | None:
    subs = uow.jobs.active_auto_redemptions(int(cursor or 0), 1)
    return str(subs[0].id) if subs else None


# job name -> the key of the first item after a cursor (None: no more items)
NEXT_ITEM: dict[str, Callable[..., str | None]] = {
    "expiry-warnings": _next_member,
    "tier-review": _next_candidate,
    "auto-redeem": _next_subscription,
}


def can_isolate(job: Job, exc: BaseException) -> bool:
    """Whether a failed batch of ``job`` is worth doing again item by item: not when the
    database connection itself went (that fails the run, which is resumed later)."""
    lost = isinstance(exc, ConnectionError | TimeoutError) or getattr(
        exc, "connection_invalidated", False) or type(exc).__name__ == "InterfaceError"
    return job.name in NEXT_ITEM and not lost


def describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200]


def step_one_by_one(uow: UnitOfWork, rules: ProgrammeRules, job: Job, now: datetime,
                    config: JobsConfig, cursor: str | None, run_key: str, *, batch: int | None,
                    samples: int = 0) -> Step:
    """The batch after ``cursor``, one item per savepoint; failing items set aside."""
    next_item = NEXT_ITEM[job.name]
    counts: dict[str, int] = {}
    picked: list[Any] = []
    events: list[dict[str, Any]] = []
    for _ in range(batch or job.batch):
        try:
            with uow.savepoint():
                step = job.step(uow, rules, now, config, cursor, batch=1,
                                samples=max(0, samples - len(picked)))
        except Exception as exc:  # noqa: BLE001 - any failure of one item sets it aside
            item = next_item(uow, rules, now, cursor)
            if item is None:
                raise
            error = describe(exc)
            uow.jobs.job_set_item_aside(job.name, run_key, item, error, now)
            add(counts, "set_aside")
            shown = masked(item) if item.isdigit() and len(item) >= 7 else item
            events.append(dict(set_aside=shown, error=error))
            cursor = item
            continue
        for key, value in step.counts.items():
            add(counts, key, value)
        picked += step.samples
        events += step.events
        cursor = step.cursor
        if cursor is None:
            break
    return Step(cursor, counts, tuple(picked), tuple(events))
