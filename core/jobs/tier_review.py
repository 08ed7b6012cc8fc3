"""Tier review on the tier cycle: members whose tier may change are reviewed with the core's
``review_tier``; those whose tier changed get an SMS (queued in the same transaction).

One grouped query per batch finds the candidates (qualifying points above their tier, or a tier
whose validity ended); ``review_tier`` decides again under the member's lock.
"""

from __future__ import annotations

from datetime import datetime

from core.accounts import review_tier
from core.config import JobsConfig
from core.domain import AccountNeedsAttention
from core.jobs.base import Sample, Step, add, queue_notice
from core.messages import tier_changed_message
from core.ports import UnitOfWork
from core.rules import (
    ProgrammeRules,
    qualifying_window_start,
    tier_floor,
    tier_for,
    tier_rank,
    tier_valid_until,
)

BATCH = 2000
KIND = "tier_changed"


def tier_review(uow: UnitOfWork, rules: ProgrammeRules, now: datetime, config: JobsConfig,
                cursor: str | None = None, *, dry_run: bool = False, samples: int = 0,
                batch: int = BATCH) -> Step:
    today = rules.today(now)
    rows = uow.jobs.tier_review_page(cursor or "", batch, qualifying_window_start(today),
                                     rules.programme.qualifying_sources)
    counts: dict[str, int] = {"members": len(rows)}
    picked: list[Sample] = []
    for row in rows:
        earned = tier_for(row.qualifying_points, rules.tiers)
        granted = tier_floor(row.granted_tier_code, row.granted_tier_until, today, rules.tiers)
        if granted and tier_rank(granted[0].code, rules.tiers) > tier_rank(earned.code,
                                                                            rules.tiers):
            earned = granted[0]  # review_tier never goes below a granted tier
        still_valid = row.tier_valid_until is not None and row.tier_valid_until >= today
        if still_valid and tier_rank(earned.code, rules.tiers) <= tier_rank(row.tier_code,
                                                                             rules.tiers):
            continue
        if dry_run:
            old, new = row.tier_code, earned.code
            valid_until = tier_valid_until(today, rules.programme)
        else:
            try:
                old, new = review_tier(uow, rules, row.msisdn, now)
            except AccountNeedsAttention:  # corrupt lots: check ledger names the member
                add(counts, "needs_attention")
                continue
            valid_until = uow.members.get_member(row.msisdn).tier_valid_until
        add(counts, "reviewed")
        if old == new:
            continue
        up = tier_rank(new, rules.tiers) > tier_rank(old, rules.tiers)
        add(counts, "upgraded" if up else "downgraded")
        old_tier, new_tier = rules.tier(old), rules.tier(new)
        message = tier_changed_message(old_tier, new_tier, up, valid_until, row.language)
        if len(picked) < samples:
            picked.append(Sample(row.msisdn, row.language, message.template, message.params))
        if not dry_run and not queue_notice(uow, rules, config, row.msisdn, now, kind=KIND,
                                            template=message.template, params=message.params,
                                            dedupe_key=f"tier:{row.msisdn}:{today}:{new}",
                                            optional=True):
            add(counts, "opted_out")
    next_cursor = rows[-1].msisdn if len(rows) >= batch else None
    return Step(next_cursor, counts, tuple(picked))
