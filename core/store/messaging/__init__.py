"""The messaging repository: the SQL of the SMS channel's MO store, outbox and receipts.

Exposed on the unit of work as ``uow.messaging`` (typed in the core as
``core.messaging.repository.MessagingRepository``).
"""

from __future__ import annotations

from core.store.messaging.handled import HandledQueries
from core.store.messaging.reads import ReadQueries


class SqlMessaging(HandledQueries, ReadQueries):
    """MO and MT queries, and the batched reads of the read-only keywords, on one
    connection (the unit of work's)."""


__all__ = ["SqlMessaging"]
