"""The messaging repository: the SQL of the SMS channel's MO store, outbox and receipts.

Exposed on the unit of work as ``uow.messaging`` (typed in the core as
``core.messaging.repository.MessagingRepository``).
"""

from __future__ import annotations

from core.store.messaging.mo import MOQueries
from core.store.messaging.outbox import OutboxQueries


class SqlMessaging(MOQueries, OutboxQueries):
    """MO and MT queries on one connection (the unit of work's)."""


__all__ = ["SqlMessaging"]
