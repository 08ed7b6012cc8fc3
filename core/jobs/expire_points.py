"""Points expiry: lots past their date are expired with ledger entries (a batch per step).

Running it again changes nothing: expired lots are marked and never picked twice.
"""

from __future__ import annotations

from datetime import datetime

from core.accounts import expire_lapsed_lots
from core.config import JobsConfig
from core.jobs.base import Step
from core.ports import UnitOfWork
from core.rules import ProgrammeRules

BATCH = 5000


def expire_points(uow: UnitOfWork, rules: ProgrammeRules, now: datetime, config: JobsConfig,
                  cursor: str | None = None, *, dry_run: bool = False, samples: int = 0,
                  batch: int = BATCH) -> Step:
    if dry_run:
        lots, points, members = uow.jobs.lapsed_summary(now)
        return Step(None, {"lots": lots, "points": points, "members": members})
    lots, points = expire_lapsed_lots(uow, rules, now, batch=batch)
    return Step("more" if lots >= batch else None, {"lots": lots, "points": points})
