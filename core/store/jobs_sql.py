"""Queries for the scheduled jobs (expiry warnings, auto-redemption, tier review, job runs).

Bulk by design: the expiry-warning job reads one grouped query per batch of members and writes
its warning rows (here) and outbox rows (``outbox_sql``) with one bulk insert each, so a run
over a million members makes a few hundred round trips, not millions.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import DateTime, and_, func, insert, or_, select, text, type_coerce, update

from core.jobs.records import (
    AutoRedemption,
    ExpiringBatch,
    ExpiryWarning,
    JobRun,
    TierCandidate,
)
from core.store.repository import SqlRepository
from core.store.sums import out_of_range, points_sum
from core.store.tables import (
    auto_redemptions,
    expiry_warnings,
    job_runs,
    job_set_aside,
    lots,
    members,
)

_LOCK_NAMESPACE = 0x4C4A  # pg_advisory locks of the jobs: (namespace, crc32 of the job name)


def _signed32(value: int) -> int:
    return value - (1 << 32) if value >= (1 << 31) else value


class SqlJobs(SqlRepository):
    """Job runs, expiry warnings, auto-redemptions, tier review pages and the items a run set
    aside: the ``JobsRepository`` of ``core.ports``."""

    # --- job runs ---------------------------------------------------------------------------

    def try_job_lock(self, job: str) -> bool:
        """A transaction-scoped advisory lock on the job's name (PostgreSQL); SQLite's
        ``BEGIN IMMEDIATE`` already serialises writers, so there it is always granted."""
        if self.is_sqlite:
            return True
        key = _signed32(zlib.crc32(f"loyalty-job:{job}".encode()))
        return bool(self.conn.execute(
            text("SELECT pg_try_advisory_xact_lock(:ns, :key)"),
            {"ns": _LOCK_NAMESPACE, "key": key}).scalar())

    def insert_job_run(self, job: str, run_key: str, now: datetime, summary: str) -> int | None:
        """Insert the run's row; None when (job, run_key) exists already."""
        stmt = self._insert(job_runs).values(
            job=job, run_key=run_key, started_at=now, state="running", summary=summary,
        ).on_conflict_do_nothing(index_elements=["job", "run_key"]).returning(job_runs.c.id)
        return self.conn.execute(stmt).scalar()

    def get_job_run(self, job: str, run_key: str, *, for_update: bool = False) -> JobRun | None:
        row = self._first(select(job_runs).where(
            job_runs.c.job == job, job_runs.c.run_key == run_key), for_update=for_update)
        return _job_run(row) if row else None

    def get_job_run_by_id(self, run_id: int, *, for_update: bool = False) -> JobRun | None:
        row = self._first(select(job_runs).where(job_runs.c.id == run_id),
                          for_update=for_update)
        return _job_run(row) if row else None

    def update_job_run(self, run_id: int, **fields: Any) -> None:
        self.conn.execute(update(job_runs).where(job_runs.c.id == run_id).values(**fields))

    def recent_job_runs(self, limit: int) -> list[JobRun]:
        rows = self.conn.execute(
            select(job_runs).order_by(job_runs.c.started_at.desc(), job_runs.c.id.desc())
            .limit(limit))
        return [_job_run(r) for r in rows]

    # --- expiry warnings --------------------------------------------------------------------

    def member_page_bound(self, after: str, limit: int) -> tuple[str | None, int]:
        """The last msisdn of the next ``limit`` members after ``after``, and how many."""
        page = select(members.c.msisdn).where(members.c.msisdn > after) \
            .order_by(members.c.msisdn).limit(limit).subquery()
        count, upto = self.conn.execute(
            select(func.count(), func.max(page.c.msisdn))).one()
        return upto, int(count)

    def expiring_batches(self, after: str, upto: str, now: datetime,
                         horizon: datetime) -> list[ExpiringBatch]:
        """Per member in (after, upto] and expiry instant in (now, horizon]: the points left."""
        # The instant is read without UTCDateTime's per-row processing (a batch shares a
        # handful of distinct instants): made aware once per distinct value below.
        rows = self.conn.execute(
            select(lots.c.msisdn, type_coerce(lots.c.expires_at, DateTime),
                   points_sum(lots.c.remaining, self.is_sqlite), members.c.language,
                   members.c.warning_channel,
                   members.c.warning_opt_out)
            .join(members, members.c.msisdn == lots.c.msisdn)
            # The range on both sides lets PostgreSQL merge two index range scans (without it,
            # it hash-joins a sequential scan of all members: 10x slower per batch).
            .where(lots.c.msisdn > after, lots.c.msisdn <= upto,
                   members.c.msisdn > after, members.c.msisdn <= upto, lots.c.remaining > 0,
                   members.c.line_status != "closed",  # closed and retired accounts: no one
                   lots.c.expired.is_(False), lots.c.expires_at > now,
                   lots.c.expires_at <= horizon)
            .group_by(lots.c.msisdn, lots.c.expires_at, members.c.language,
                      members.c.warning_channel, members.c.warning_opt_out)
            .order_by(lots.c.msisdn, lots.c.expires_at)).all()
        aware: dict[Any, datetime] = {}
        out = []
        for msisdn, expires_at, points, language, channel, opted_out in rows:
            if out_of_range(points):  # a corrupt account: check ledger reports it
                continue
            instant = aware.get(expires_at)
            if instant is None:
                instant = aware[expires_at] = _aware_utc(expires_at)
            out.append(ExpiringBatch(msisdn, instant, int(points), language, channel,
                                     bool(opted_out)))
        return out

    def warned_keys(self, after: str, upto: str,
                    now: datetime) -> set[tuple[str, datetime, str]]:
        rows = self.conn.execute(
            select(expiry_warnings.c.msisdn, expiry_warnings.c.expires_at,
                   expiry_warnings.c.stage)
            .where(expiry_warnings.c.msisdn > after, expiry_warnings.c.msisdn <= upto,
                   expiry_warnings.c.expires_at > now))
        return {(r[0], r[1], r[2]) for r in rows}

    def add_expiry_warnings(self, rows: Sequence[dict[str, Any]], now: datetime) -> None:
        """Warning rows (msisdn, expires_at, stage, points, channel, state); one that exists
        already (same msisdn, expires_at and stage) is skipped."""
        if not rows:
            return
        self._insert_new(
            expiry_warnings, rows, dict(attempts=0, created_at=now, updated_at=now),
            unique=["msisdn", "expires_at", "stage"],
            copy_columns=dict(msisdn="varchar(20)", expires_at="timestamp", stage="varchar(10)",
                              points="integer", channel="varchar(10)", state="varchar(15)",
                              attempts="integer", created_at="timestamp",
                              updated_at="timestamp"),
            copy_conflict="ON CONFLICT ON CONSTRAINT uq_expiry_warnings_batch DO NOTHING")

    def lapsed_summary(self, now: datetime) -> tuple[int, int, int]:
        """(lots, points, members) that an expiry run at ``now`` would expire."""
        lots_n, points, members_n = self.conn.execute(
            select(func.count(),
                   func.coalesce(points_sum(lots.c.remaining, self.is_sqlite), 0),
                   func.count(func.distinct(lots.c.msisdn)))
            .where(lots.c.expires_at <= now, lots.c.expired.is_(False), lots.c.remaining > 0)
        ).one()
        return int(lots_n), int(points), int(members_n)

    # --- voice warnings ---------------------------------------------------------------------

    def due_voice_warnings(self, retry_before: datetime, stale_before: datetime,
                           limit: int) -> list[tuple[ExpiryWarning, bool]]:
        """Voice warnings to call now, locked (skipping rows another process holds), with
        whether the member opted out since."""
        w = expiry_warnings
        stmt = (
            select(w, func.coalesce(members.c.warning_opt_out, False).label("opted_out"))
            .outerjoin(members, members.c.msisdn == w.c.msisdn)
            .where(w.c.channel == "voice", or_(
                and_(w.c.state == "pending",
                     or_(w.c.attempts == 0, w.c.updated_at <= retry_before)),
                and_(w.c.state == "calling", w.c.updated_at <= stale_before)))
            .order_by(w.c.expires_at, w.c.id).limit(limit)
        )
        if not self.is_sqlite:
            stmt = stmt.with_for_update(skip_locked=True, of=w)
        return [(_warning(r), bool(r.opted_out)) for r in self.conn.execute(stmt)]

    def get_expiry_warning(self, warning_id: int) -> ExpiryWarning | None:
        row = self.conn.execute(
            select(expiry_warnings).where(expiry_warnings.c.id == warning_id)).first()
        return _warning(row) if row else None

    def expiry_warnings_for(self, msisdn: str) -> list[ExpiryWarning]:
        rows = self.conn.execute(select(expiry_warnings).where(
            expiry_warnings.c.msisdn == msisdn).order_by(expiry_warnings.c.id))
        return [_warning(r) for r in rows]

    def set_expiry_warning_state(self, warning_id: int, state: str, now: datetime, *,
                                 attempts: int | None = None) -> None:
        values: dict[str, Any] = dict(state=state, updated_at=now)
        if attempts is not None:
            values["attempts"] = attempts
        self.conn.execute(update(expiry_warnings).where(expiry_warnings.c.id == warning_id)
                          .values(**values))

    # --- auto-redemption and tier review ----------------------------------------------------

    def active_auto_redemptions(self, after_id: int, limit: int) -> list[AutoRedemption]:
        a = auto_redemptions
        rows = self.conn.execute(
            select(a.c.id, a.c.msisdn, a.c.reward_code)
            .where(a.c.active.is_(True), a.c.id > after_id).order_by(a.c.id).limit(limit))
        return [AutoRedemption(r.id, r.msisdn, r.reward_code) for r in rows]

    def tier_review_page(self, after: str, limit: int, since: date,
                         sources: Sequence[str]) -> list[TierCandidate]:
        """The next ``limit`` members after ``after`` with their qualifying points since
        ``since`` (one grouped query for the page)."""
        page = list(self.conn.execute(
            select(members.c.msisdn, members.c.language, members.c.tier_code,
                   members.c.tier_valid_until, members.c.granted_tier_code,
                   members.c.granted_tier_until)
            .where(members.c.msisdn > after, members.c.line_status != "closed")
            .order_by(members.c.msisdn).limit(limit)))
        if not page:
            return []
        earned = dict(self.conn.execute(
            select(lots.c.msisdn, points_sum(lots.c.amount, self.is_sqlite))
            .where(lots.c.msisdn > after, lots.c.msisdn <= page[-1].msisdn,
                   lots.c.earned_on >= since, lots.c.source.in_(list(sources)))
            .group_by(lots.c.msisdn)).all())
        return [TierCandidate(r.msisdn, r.language, r.tier_code, r.tier_valid_until,
                              int(earned.get(r.msisdn) or 0), r.granted_tier_code,
                              r.granted_tier_until) for r in page]

    def auto_redemption_subscribe(self, msisdn: str, reward_code: str, active: bool,
                                  now: datetime) -> None:
        exists = self.conn.execute(select(auto_redemptions.c.id).where(
            auto_redemptions.c.msisdn == msisdn,
            auto_redemptions.c.reward_code == reward_code)).scalar()
        if exists:
            self.conn.execute(update(auto_redemptions).where(auto_redemptions.c.id == exists)
                              .values(active=active))
        else:
            self.conn.execute(insert(auto_redemptions), dict(
                msisdn=msisdn, reward_code=reward_code, active=active, created_at=now))

    def auto_redemption_cancel(self, msisdn: str, keep: str | None = None) -> int:
        """Deactivate the member's active subscriptions but ``keep``'s; how many were."""
        a = auto_redemptions
        stmt = update(a).where(a.c.msisdn == msisdn, a.c.active.is_(True))
        if keep is not None:
            stmt = stmt.where(a.c.reward_code != keep)
        return self.conn.execute(stmt.values(active=False)).rowcount or 0

    def auto_redemption_of(self, msisdn: str) -> str | None:
        """The reward of the member's active subscription (the latest one), if any."""
        a = auto_redemptions
        return self.conn.execute(
            select(a.c.reward_code).where(a.c.msisdn == msisdn, a.c.active.is_(True))
            .order_by(a.c.id.desc()).limit(1)).scalar()

    # --- items a run set aside --------------------------------------------------------------

    def job_set_item_aside(self, job: str, run_key: str, item: str, error: str,
                           now: datetime) -> None:
        exists = self.conn.execute(select(job_set_aside.c.id).where(
            job_set_aside.c.job == job, job_set_aside.c.run_key == run_key,
            job_set_aside.c.item == item)).scalar()
        if exists is None:
            self.conn.execute(job_set_aside.insert().values(
                job=job, run_key=run_key, item=item[:60], error=error[:200], created_at=now))

    def set_aside_job_item(self, item_id: int) -> tuple[str, str, str] | None:
        row = self.conn.execute(select(job_set_aside).where(
            job_set_aside.c.id == item_id)).first()
        return (row.job, row.run_key, row.item) if row is not None else None


def _aware_utc(value: Any) -> datetime:
    if isinstance(value, str):  # pragma: no cover - SQLite without type detection
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC)


def _job_run(row: Any) -> JobRun:
    try:
        summary = json.loads(row.summary) if row.summary else {}
    except ValueError:
        summary = {"text": row.summary}
    return JobRun(row.id, row.job, row.run_key, row.state, row.started_at, row.finished_at,
                  summary if isinstance(summary, dict) else {"value": summary})


def _warning(row: Any) -> ExpiryWarning:
    return ExpiryWarning(row.id, row.msisdn, row.expires_at, row.stage, row.points, row.channel,
                         row.state, row.attempts, row.updated_at)
