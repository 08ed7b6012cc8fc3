"""The jobs, by the name ops use (``loyalty jobs run NAME``)."""

from __future__ import annotations

from core.jobs.auto_redeem import auto_redeem
from core.jobs.base import Job
from core.jobs.expire_points import expire_points
from core.jobs.expiry_warnings import expiry_warnings
from core.jobs.tier_review import tier_review

JOBS: dict[str, Job] = {job.name: job for job in (
    Job("expire-points", "expire lots past their date", expire_points, "expire_points_at"),
    Job("tier-review", "review tiers, SMS to members whose tier changed", tier_review,
        "tier_review_at"),
    Job("auto-redeem", "monthly automatic redemptions", auto_redeem, "auto_redeem_at",
        monthly=True),
    Job("expiry-warnings", "warn members of points about to expire", expiry_warnings,
        "expiry_warning_at"),
)}


def get_job(name: str) -> Job:
    try:
        return JOBS[name]
    except KeyError:
        raise KeyError(f"no job {name!r} (jobs: {', '.join(JOBS)})") from None
