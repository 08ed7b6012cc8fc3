"""Re-issued numbers: the account once held on a number is retired under an archive key.

Every row of the old account moves, in the caller's transaction, to a members row keyed
``R000001`` (line closed, so no channel or job ever sees it), recorded in ``archived_members``
so ops can find it from the number. PostgreSQL checks the foreign keys on each statement, so
the order is: the archive members row first, then the children repointed, then the number's
own row reset for its new owner.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update

from core.domain import LineStatus
from core.store.repository import SqlRepository
from core.store.tables import (
    archived_members,
    auto_redemptions,
    confirmations,
    expiry_warnings,
    ledger,
    lots,
    members,
    orders,
    outbox,
    tickets,
)

# Tables whose rows belong to the member on the number (the foreign keys to members.msisdn,
# plus the warnings already sent about her points).
MEMBER_ROWS = (lots, ledger, orders, tickets, confirmations, auto_redemptions, expiry_warnings)
# Outbox rows not yet handed to the SMSC: the old owner's, never to reach the new one.
UNSENT = ("queued", "sending", "set_aside")


class RetiredAccounts(SqlRepository):
    """The re-issue half of ``MembersRepository`` (mixed into ``SqlMembers``)."""

    def retire_member(self, msisdn: str, now: datetime, fresh: dict[str, Any]) -> str:
        """Move the account on ``msisdn`` and all its rows to a new archive key (returned)
        and reset the number's row to ``fresh`` (name, language, tier, subscriber id...):
        no points, orders, PIN or preferences."""
        old = self.conn.execute(
            self._lock(select(members).where(members.c.msisdn == msisdn))).one()
        archive_id = self.conn.execute(
            insert(archived_members).returning(archived_members.c.id),
            dict(msisdn=msisdn, subscriber_id=old.subscriber_id, retired_at=now)).scalar_one()
        key = f"R{archive_id:06d}"
        self.conn.execute(update(archived_members).where(archived_members.c.id == archive_id)
                          .values(archive_key=key))
        self.conn.execute(insert(members), dict(old._mapping, msisdn=key,
                                                line_status=LineStatus.CLOSED))
        for table in MEMBER_ROWS:
            self.conn.execute(update(table).where(table.c.msisdn == msisdn).values(msisdn=key))
        # The old owner's monthly automatic redemption ends with her account.
        self.conn.execute(update(auto_redemptions).where(auto_redemptions.c.msisdn == key)
                          .values(active=False))
        self.conn.execute(update(outbox).where(outbox.c.msisdn == msisdn,
                                               outbox.c.state.in_(UNSENT))
                          .values(msisdn=key, state="failed", final_at=now,
                                  error="number re-issued to another subscriber"))
        reset = dict(warning_opt_out=False, warning_channel="sms", pin_hash=None,
                     pin_failures=0, pin_locked_until=None, tier_valid_until=None,
                     granted_tier_code=None, granted_tier_until=None,
                     line_status=LineStatus.ACTIVE, subscriber_id=None, delivery_address=None,
                     created_at=now)
        self.conn.execute(update(members).where(members.c.msisdn == msisdn)
                          .values(reset | {k: v for k, v in fresh.items() if k != "msisdn"}))
        return key

    def archived_keys(self, msisdn: str) -> list[str]:
        """The archive keys of the accounts once held on ``msisdn``, oldest first."""
        return list(self.conn.execute(
            select(archived_members.c.archive_key).where(archived_members.c.msisdn == msisdn)
            .order_by(archived_members.c.id)).scalars())
