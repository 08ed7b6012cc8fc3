"""The jobs, by the name ops use (``loyalty jobs run NAME``)."""

from __future__ import annotations

from core.jobs import auto_redeem, expire_points, expiry_warnings, tier_review
from core.jobs.base import Job

JOBS: dict[str, Job] = {job.name: job for job in (
    Job("expire-points", "expire lots past their date", expire_points.expire_points,
        "expire_points_at", batch=expire_points.BATCH),
    Job("tier-review", "review tiers, SMS to members whose tier changed",
        tier_review.tier_review, "tier_review_at", batch=tier_review.BATCH),
    Job("auto-redeem", "monthly automatic redemptions", auto_redeem.auto_redeem,
        "auto_redeem_at", monthly=True, batch=auto_redeem.BATCH),
    Job("expiry-warnings", "warn members of points about to expire",
        expiry_warnings.expiry_warnings, "expiry_warning_at", batch=expiry_warnings.BATCH),
)}


def get_job(name: str) -> Job:
    try:
        return JOBS[name]
    except KeyError:
        raise KeyError(f"no job {name!r} (jobs: {', '.join(JOBS)})") from None
