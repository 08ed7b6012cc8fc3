"""What the fulfilment use cases need of the store: the queue of service and voucher orders
waiting for the provisioning API (claims with a lease, outcomes, the CSV fallback)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from core.domain import FulfilmentItem


class FulfilmentRepository(Protocol):
    """The fulfilment queue (on the orders themselves; a service or voucher order is stored
    already due: ``core.store.redeem_sql.order_values``)."""

    def claim_fulfilments(self, now: datetime, until: datetime, limit: int
                          ) -> list[FulfilmentItem]:
        """Claim due orders (confirmed and due, or fulfilling with a lapsed lease), skipping
        rows another process holds: fulfilling until ``until``, attempts counted."""
        ...

    def get_fulfilment(self, order_no: str, *, for_update: bool = False
                       ) -> FulfilmentItem | None:
        ...

    def retry_fulfilment(self, order_no: str, due_at: datetime, error: str) -> None:
        ...

    def finish_fulfilment(self, order_no: str, status: str, now: datetime, *,
                          reference: str | None = None, error: str | None = None) -> None:
        ...

    def pending_fulfilments(self, limit: int = 100_000) -> list[FulfilmentItem]:
        """Queued orders not yet fulfilled or failed, oldest first."""
        ...

    def fulfilment_outcome(self, order_no: str) -> tuple[str | None, str | None]:
        """(reference, error) stored on the order."""
        ...

    def fulfilment_queue(self) -> tuple[int, datetime | None]:
        """(orders waiting or in flight, the oldest one's order time)."""
        ...
