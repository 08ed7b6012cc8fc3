"""Queries for the scheduled jobs (expiry warnings, auto-redemption, tier review, job runs)."""

from __future__ import annotations


class JobsQueries:
    """Mixed into SqlUnitOfWork; uses ``self.conn`` and ``self.is_sqlite``."""
