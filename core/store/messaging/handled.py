"""What a handled batch of MO writes, as one statement on PostgreSQL.

A handled batch ends with three writes: the senders' rate windows, the replies queued in the
outbox and the MO marked handled. Each is a round trip to PostgreSQL, and round trips are the
fixed cost of the SMS channel's every round, paid again by every process when several share
a load (smaller rounds each). Here they go as one statement: the rate windows and the MO
states as data-modifying ``WITH`` parts of the outbox insert. PostgreSQL runs such parts to
completion with the statement, each on its own rows (no two parts touch the same table), so
the result is what the three statements leave; the rate windows are still upserted in number
order (the lock order against deadlocks between processes). SQLite, in process, runs the
three statements (``save_rate_windows``, ``queue_outbox``, ``mark_mo``), as does PostgreSQL
for replies without one distinct dedupe key each (never an MO's replies).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from core.messaging.records import RateWindow
from core.store.messaging.base import QueriesBase
from core.store.messaging.mo import PG_RATE_UPSERT, MOQueries
from core.store.messaging.outbox import OUTBOX_COLUMNS, OutboxQueries, outbox_values

_FINISH_SQL = (
    # The rate windows, in number order (as ``save_rate_windows``).
    f"WITH rate AS ({PG_RATE_UPSERT}), "
    # The MO states (as ``mark_mo``).
    "marked AS (UPDATE mo_messages SET state = v.s, handled_at = ? "
    "FROM unnest(?::bigint[], ?::text[]) AS v(id, s) WHERE mo_messages.id = v.id) "
    # The replies (as ``queue_outbox``), their ids matched back by dedupe key.
    f"INSERT INTO outbox ({', '.join(OUTBOX_COLUMNS)}) SELECT * FROM unnest("
    + "?::text[], " * 8 + "?::int[], ?::timestamp[], ?::timestamp[], ?::timestamp[]) "
    "RETURNING id, dedupe_key"
)


class HandledQueries(MOQueries, OutboxQueries, QueriesBase):
    def finish_handling(self, windows: Sequence[RateWindow], replies: Sequence[dict[str, Any]],
                        states: Sequence[tuple[int, str]], now: datetime) -> list[int]:
        """Save ``windows``, queue ``replies`` (``queue_outbox``'s rows) and mark the MO
        ((mo id, state) pairs, as ``mark_mo``); returns the replies' ids in order."""
        keys = [r.get("dedupe_key") for r in replies]
        if self.is_sqlite or None in keys or len(set(keys)) != len(keys):
            self.save_rate_windows(windows)
            ids = self.queue_outbox(replies)
            self.mark_mo(states, now)
            return ids
        rows = outbox_values(replies, self._db_time)
        ids = dict((k, i) for i, k in self._raw(_FINISH_SQL, (
            *self._columns(self._rate_values(windows), 4), self._db_time(now),
            *self._columns(states, 2), *self._columns(rows, 12))))
        return [ids[k] for k in keys]

    def _columns(self, rows: Sequence[tuple[Any, ...]], width: int) -> tuple[str, ...]:
        """``_arrays``, also for no rows (``width`` empty arrays)."""
        return self._arrays(rows) if rows else ("{}",) * width
