"""Messaging queries for MO messages: storing (parts, repeats), claiming, marking, rate windows.

Bulk by design: the SMS channel batches work per transaction (every MO stored in one reactor
turn, every MO handled in one handler round), so these methods take and return lists and use
executemany / multi-row statements.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update

from core.messaging.records import MOPart, RateWindow, StoredMO
from core.store.messaging.base import QueriesBase, chunks, marks, py_time
from core.store.queues_sql import SET_ASIDE
from core.store.sums import out_of_range, sql_points_sum
from core.store.tables import mo_messages, mo_parts, outbox, sms_rate

# A rate window saved again replaces the stored one (``save_rate_windows``, ``handled``).
RATE_UPSERT = ("ON CONFLICT (msisdn) DO UPDATE SET window_start = excluded.window_start, "
               '"count" = excluded."count", warned = excluded.warned')
# PostgreSQL: the windows as arrays, upserted in the order given (number order).
PG_RATE_UPSERT = ('INSERT INTO sms_rate (msisdn, window_start, "count", warned) '
                  "SELECT m, s, c, w FROM unnest(?::text[], ?::timestamp[], ?::int[], "
                  f"?::boolean[]) WITH ORDINALITY AS v(m, s, c, w, n) ORDER BY n {RATE_UPSERT}")


class MOQueries(QueriesBase):
    # --- MO: storing ------------------------------------------------------------------------

    def existing_mo_keys(self, keys: Sequence[str], since: datetime) -> set[str]:
        """The keys among ``keys`` of messages received at or after ``since``."""
        found: set[str] = set()
        since_db = self._db_time(since)
        for chunk in chunks(list(keys)):
            found.update(k for k, in self._raw(
                f"SELECT dedupe_key FROM mo_messages WHERE dedupe_key IN ({marks(len(chunk))})"
                " AND received_at >= ?", (*chunk, since_db)))
        return found

    def insert_mo(self, rows: Sequence[dict[str, Any]]) -> None:
        """rows: dedupe_key, msisdn, text, received_at. A key already stored is skipped."""
        if not rows:
            return
        values = [(r["dedupe_key"], r["msisdn"], r["text"], self._db_time(r["received_at"]))
                  for r in rows]
        if self.is_sqlite:
            self._raw('INSERT INTO mo_messages (dedupe_key, msisdn, "text", state, received_at) '
                      "VALUES (?, ?, ?, 'received', ?) ON CONFLICT (dedupe_key) DO NOTHING",
                      values)
        else:  # in the given order: ids are the order of arrival
            self._raw('INSERT INTO mo_messages (dedupe_key, msisdn, "text", state, received_at) '
                      "SELECT k, m, t, 'received', r FROM unnest(?::text[], ?::text[], "
                      "?::text[], ?::timestamp[]) WITH ORDINALITY AS v(k, m, t, r, n) ORDER BY n "
                      "ON CONFLICT (dedupe_key) DO NOTHING", self._arrays(values))

    def existing_part_keys(self, keys: Sequence[str], since: datetime) -> set[str]:
        found: set[str] = set()
        for chunk in chunks(list(keys)):
            found.update(self.conn.execute(select(mo_parts.c.dedupe_key).where(
                mo_parts.c.dedupe_key.in_(chunk), mo_parts.c.received_at >= since)
            ).scalars())
        return found

    def insert_mo_parts(self, rows: Sequence[dict[str, Any]]) -> None:
        """rows: dedupe_key, msisdn, ref, total, seq, text, received_at."""
        if rows:
            self.conn.execute(
                self._insert(mo_parts).on_conflict_do_nothing(index_elements=["dedupe_key"]),
                list(rows))

    def open_parts(self, msisdn: str, ref: int, total: int,
                   since: datetime) -> list[MOPart]:
        """The not yet joined parts of one set received since ``since``, by seq (the
        newest copy of each seq)."""
        rows = self.conn.execute(
            select(mo_parts.c.id, mo_parts.c.seq, mo_parts.c.text).where(
                mo_parts.c.msisdn == msisdn, mo_parts.c.ref == ref, mo_parts.c.total == total,
                mo_parts.c.mo_id.is_(None), mo_parts.c.received_at >= since)
            .order_by(mo_parts.c.seq, mo_parts.c.id.desc()))
        seen: dict[int, MOPart] = {}
        for r in rows:
            seen.setdefault(r.seq, MOPart(r.id, r.seq, r.text))
        return list(seen.values())

    def join_parts(self, part_ids: Sequence[int], mo_dedupe_key: str) -> None:
        """Mark parts as joined into the message stored under ``mo_dedupe_key``."""
        mo_id = self.conn.execute(select(mo_messages.c.id).where(
            mo_messages.c.dedupe_key == mo_dedupe_key)).scalar()
        for chunk in chunks(list(part_ids)):
            self.conn.execute(update(mo_parts).where(mo_parts.c.id.in_(chunk))
                              .values(mo_id=mo_id if mo_id is not None else 0))

    def purge_parts(self, before: datetime) -> int:
        return self.conn.execute(delete(mo_parts).where(mo_parts.c.received_at < before)).rowcount

    # --- MO: handling -----------------------------------------------------------------------

    def claim_mo(self, limit: int, now: datetime | None = None, *,
                 only_from: str | None = None, after_id: int = 0) -> list[StoredMO]:
        """The oldest received messages (those due: not waiting for a retry after ``now``;
        ``only_from``: from that source, with ids above ``after_id``); on PostgreSQL locked
        (SKIP LOCKED) until commit."""
        due, params = "", ()
        if now is not None:
            due, params = " AND (next_attempt_at IS NULL OR next_attempt_at <= ?)", (
                self._db_time(now),)
        if only_from is not None:
            due, params = due + " AND msisdn = ? AND id > ?", (*params, only_from, after_id)
        rows = self._raw(
            'SELECT id, msisdn, "text", received_at, attempts, repeat_of FROM mo_messages '
            "WHERE state = 'received'" + due + " ORDER BY id LIMIT ?"
            + ("" if self.is_sqlite else " FOR UPDATE SKIP LOCKED"), (*params, limit))
        return [StoredMO(i, m, t, py_time(at), n or 0, r) for i, m, t, at, n, r in rows]

    def claim_mo_ids(self, ids: Sequence[int]) -> list[StoredMO]:
        """These messages if still received (locked on PostgreSQL), in id order."""
        c = mo_messages.c
        stmt = select(c.id, c.msisdn, c.text, c.received_at, c.attempts, c.repeat_of).where(
            c.state == "received", c.id.in_(list(ids))).order_by(c.id)
        if not self.is_sqlite:
            stmt = stmt.with_for_update(skip_locked=True)
        return [StoredMO(r.id, r.msisdn, r.text, r.received_at, r.attempts or 0, r.repeat_of)
                for r in self.conn.execute(stmt)]

    def mark_mo(self, outcomes: Sequence[tuple[int, str]], now: datetime) -> None:
        """(mo id, state) pairs: 'handled', 'failed' or 'set_aside'."""
        by_state: dict[str, list[int]] = {}
        for i, state in outcomes:
            by_state.setdefault(state, []).append(i)
        now_db = self._db_time(now)
        for state, ids in by_state.items():
            for chunk in chunks(ids):
                self._raw(f"UPDATE mo_messages SET state = ?, handled_at = ? "
                          f"WHERE id IN ({marks(len(chunk))})", (state, now_db, *chunk))

    def mo_states(self, ids: Sequence[int]) -> dict[int, str]:
        rows = self.conn.execute(select(mo_messages.c.id, mo_messages.c.state).where(
            mo_messages.c.id.in_(list(ids))))
        return {r.id: r.state for r in rows}

    def member_languages(self, msisdns: Sequence[str]) -> dict[str, str]:
        """msisdn -> language of the members among ``msisdns`` (who is a member is decided
        in one place: ``members_by_msisdn``)."""
        return {m: member.language for m, member in self.members_by_msisdn(msisdns).items()}

    def balance_summaries(self, msisdns: Sequence[str], now: datetime
                              ) -> dict[str, tuple[int, datetime | None, int]]:
        """``balance_summary`` (spendable points, soonest expiry, points expiring then) of
        many members with one grouped query; members without live lots get (0, None, 0)."""
        out: dict[str, tuple[int, datetime | None, int]] = {}
        for chunk in chunks(list(dict.fromkeys(msisdns))):
            for m in chunk:
                out[m] = (0, None, 0)
            total = sql_points_sum(self.is_sqlite).format("remaining")
            rows = self._raw(
                f"SELECT msisdn, expires_at, {total} FROM points_lots "
                f"WHERE msisdn IN ({marks(len(chunk))}) AND remaining > 0 AND expires_at > ? "
                f"GROUP BY msisdn, expires_at ORDER BY msisdn, expires_at",
                (*chunk, self._db_time(now)))
            for msisdn, stored_expiry, points in rows:
                expires_at = py_time(stored_expiry)
                if msisdn not in out:
                    continue
                if out_of_range(points) or out_of_range(out[msisdn][0] + points):
                    del out[msisdn]  # its own query (balance) says the account needs attention
                    continue
                total, first, expiring = out[msisdn]
                if first is None:
                    out[msisdn] = (total + int(points), expires_at, int(points))
                else:
                    out[msisdn] = (total + int(points), first, expiring)
        return out

    def rate_windows(self, msisdns: Sequence[str]) -> dict[str, RateWindow]:
        found: dict[str, RateWindow] = {}
        for chunk in chunks(list(dict.fromkeys(msisdns))):
            for m, start, count, warned in self._raw(
                    f'SELECT msisdn, window_start, "count", warned FROM sms_rate '
                    f"WHERE msisdn IN ({marks(len(chunk))})", tuple(chunk)):
                found[m] = RateWindow(m, py_time(start), count, bool(warned))
        return found

    def save_rate_windows(self, windows: Sequence[RateWindow]) -> None:
        if not windows:
            return
        values = self._rate_values(windows)
        if self.is_sqlite:
            self._raw('INSERT INTO sms_rate (msisdn, window_start, "count", warned) '
                      f"VALUES (?, ?, ?, ?) {RATE_UPSERT}", values)
        else:
            self._raw(PG_RATE_UPSERT, self._arrays(values))

    def _rate_values(self, windows: Sequence[RateWindow]) -> list[tuple[Any, ...]]:
        """The windows as stored, in number order: two processes' batches upserting the same
        numbers lock their rows in one order, so they wait for each other instead of
        deadlocking."""
        return [(w.msisdn, self._db_time(w.window_start), w.count, bool(w.warned))
                for w in sorted(windows, key=lambda w: w.msisdn)]

    def purge_rate_windows(self, before: datetime) -> int:
        return self.conn.execute(
            delete(sms_rate).where(sms_rate.c.window_start < before)).rowcount


    # --- MO: attempts, repeats, set-aside ------------------------------------------------------

    def mo_retry_later(self, mo_id: int, attempts: int, not_before: datetime,
                       error: str | None) -> None:
        values: dict[str, Any] = dict(attempts=attempts, next_attempt_at=not_before)
        if error is not None:
            values["last_error"] = error[:200]
        self.conn.execute(update(mo_messages).where(mo_messages.c.id == mo_id).values(**values))

    def mo_set_aside(self, mo_id: int, attempts: int, error: str, now: datetime) -> None:
        self.conn.execute(update(mo_messages).where(mo_messages.c.id == mo_id).values(
            state=SET_ASIDE, attempts=attempts, last_error=error[:200], handled_at=now,
            next_attempt_at=None))

    def mo_ids(self, keys: Sequence[str]) -> dict[str, int]:
        """dedupe key -> id of the stored messages among ``keys``."""
        if not keys:
            return {}
        rows = self.conn.execute(select(mo_messages.c.dedupe_key, mo_messages.c.id).where(
            mo_messages.c.dedupe_key.in_(list(keys))))
        return {k: i for k, i in rows}

    def last_mo_id(self) -> int:
        return int(self.conn.execute(select(func.max(mo_messages.c.id))).scalar() or 0)

    def insert_mo_repeats(self, rows: Sequence[dict[str, Any]]) -> None:
        """rows: dedupe_key, msisdn, text, received_at, repeat_of."""
        if rows:
            self.conn.execute(mo_messages.insert(), [dict(r, state="received") for r in rows])

    def mo_outcome(self, mo_id: int) -> tuple[str | None, dict[str, Any] | None]:
        """(state of the message, its reply's outbox row or None)."""
        state = self.conn.execute(select(mo_messages.c.state).where(
            mo_messages.c.id == mo_id)).scalar()
        reply = self.conn.execute(select(outbox).where(
            outbox.c.dedupe_key == f"mo:{mo_id}")).first()
        return state, dict(reply._mapping) if reply is not None else None
