"""Queries for the SMS channel (MO store, outbox claiming, delivery receipts)."""

from __future__ import annotations


class SmsQueries:
    """Mixed into SqlUnitOfWork; uses ``self.conn`` and ``self.is_sqlite``."""
