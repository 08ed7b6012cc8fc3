"""What the scheduled jobs need of the store: job runs, expiry warnings, auto-redemptions,
tier review pages and the items a run set aside."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, Protocol

from core.jobs.records import AutoRedemption, ExpiringBatch, ExpiryWarning, JobRun, TierCandidate


class JobsRepository(Protocol):
    """Job runs and what each job reads and writes in bulk."""

    def try_job_lock(self, job: str) -> bool:
        """A transaction-scoped advisory lock on the job's name (PostgreSQL); SQLite's
        ``BEGIN IMMEDIATE`` already serialises writers, so there it is always granted."""
        ...

    def insert_job_run(self, job: str, run_key: str, now: datetime, summary: str) -> int | None:
        """Insert the run's row; None when (job, run_key) exists already."""
        ...

    def get_job_run(self, job: str, run_key: str, *, for_update: bool = False) -> JobRun | None:
        ...

    def get_job_run_by_id(self, run_id: int, *, for_update: bool = False) -> JobRun | None:
        ...

    def update_job_run(self, run_id: int, **fields: Any) -> None:
        ...

    def recent_job_runs(self, limit: int) -> list[JobRun]:
        ...

    def member_page_bound(self, after: str, limit: int) -> tuple[str | None, int]:
        """The last msisdn of the next ``limit`` members after ``after``, and how many."""
        ...

    def expiring_batches(self, after: str, upto: str, now: datetime,
                         horizon: datetime) -> list[ExpiringBatch]:
        """Per member in (after, upto] and expiry instant in (now, horizon]: the points left."""
        ...

    def warned_keys(self, after: str, upto: str,
                    now: datetime) -> set[tuple[str, datetime, str]]:
        ...

    def add_expiry_warnings(self, rows: Sequence[dict[str, Any]], now: datetime) -> None:
        """Warning rows (msisdn, expires_at, stage, points, channel, state); one that exists
        already (same msisdn, expires_at and stage) is skipped."""
        ...

    def lapsed_summary(self, now: datetime) -> tuple[int, int, int]:
        """(lots, points, members) that an expiry run at ``now`` would expire."""
        ...

    def due_voice_warnings(self, retry_before: datetime, stale_before: datetime,
                           limit: int) -> list[tuple[ExpiryWarning, bool]]:
        """Voice warnings to call now, locked (skipping rows another process holds), with
        whether the member opted out since."""
        ...

    def get_expiry_warning(self, warning_id: int) -> ExpiryWarning | None:
        ...

    def expiry_warnings_for(self, msisdn: str) -> list[ExpiryWarning]:
        ...

    def set_expiry_warning_state(self, warning_id: int, state: str, now: datetime, *,
                                 attempts: int | None = None) -> None:
        ...

    def active_auto_redemptions(self, after_id: int, limit: int) -> list[AutoRedemption]:
        ...

    def tier_review_page(self, after: str, limit: int, since: date,
                         sources: Sequence[str]) -> list[TierCandidate]:
        """The next ``limit`` members after ``after`` with their qualifying points since
        ``since`` (one grouped query for the page)."""
        ...

    def auto_redemption_subscribe(self, msisdn: str, reward_code: str, active: bool,
                                  now: datetime) -> None:
        ...

    def auto_redemption_cancel(self, msisdn: str, keep: str | None = None) -> int:
        """Deactivate the member's active subscriptions but ``keep``'s; how many were."""
        ...

    def auto_redemption_of(self, msisdn: str) -> str | None:
        """The reward of the member's active subscription, if any."""
        ...

    def job_set_item_aside(self, job: str, run_key: str, item: str, error: str,
                           now: datetime) -> None:
        ...

    def set_aside_job_item(self, item_id: int) -> tuple[str, str, str] | None:
        ...
