"""Queries for the SMS channel (MO store, outbox claiming, delivery receipts).

Bulk by design: the SMS channel batches work per transaction (every MO stored in one reactor
turn, every MO handled in one handler round, every submit result and receipt of a round), so
these methods take and return lists and use executemany / multi-row statements.

The statements run for every SMS are written in the drivers' own SQL (``_raw``): building a
SQLAlchemy statement, finding it in the compiled cache and passing every value of every row
through its type processors cost more CPU than SQLite's own work, and was a third of the SMS
channel's CPU per round trip. The SQL is the common subset of SQLite and PostgreSQL; values
go in and come out as the table types would have made them (``_db_time`` / ``_py_time``).

The tables added by migration 0002_sms are defined here (on the shared metadata) because only
the SMS channel uses them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    and_,
    bindparam,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from core.store.sums import out_of_range, sql_points_sum
from core.store.tables import Id, UTCDateTime, metadata, mo_messages, outbox

# --- tables of migration 0002_sms -----------------------------------------------------------

# Segments of concatenated MO messages, stored before they are acknowledged; joined into one
# mo_messages row when the set is complete (also after a restart lost the in-memory parts).
mo_parts = Table(
    "mo_parts", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("dedupe_key", String(200), unique=True, nullable=False),
    Column("msisdn", String(20), nullable=False),
    Column("ref", Integer, nullable=False),
    Column("total", Integer, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("text", Text, nullable=False),
    Column("mo_id", Id),  # the joined message, once the set was complete
    Column("received_at", UTCDateTime, nullable=False),
)
Index("ix_mo_parts_set", mo_parts.c.msisdn, mo_parts.c.ref, mo_parts.c.total)
Index("ix_mo_parts_received", mo_parts.c.received_at)

# Per-number MO rate window (fixed one-minute windows starting at the first message).
sms_rate = Table(
    "sms_rate", metadata,
    Column("msisdn", String(20), primary_key=True),
    Column("window_start", UTCDateTime, nullable=False),
    Column("count", Integer, nullable=False),
    Column("warned", Boolean, nullable=False),
)

# The SMSC's message id of every accepted MT part, under each normalised key of it.
outbox_ids = Table(
    "outbox_ids", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("outbox_id", Id, ForeignKey("outbox.id"), nullable=False),
    Column("part", Integer, nullable=False),
    Column("message_id", String(80), nullable=False),
    Column("id_key", String(90), nullable=False),
    Column("stat", String(10)),
    Column("created_at", UTCDateTime, nullable=False),
)
Index("ix_outbox_ids_key", outbox_ids.c.id_key)
Index("ix_outbox_ids_outbox", outbox_ids.c.outbox_id, outbox_ids.c.part)

# Receipts whose message id is not (yet) recorded: a receipt may overtake its submit_sm_resp.
sms_receipts = Table(
    "sms_receipts", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("id_key", String(90), nullable=False),
    Column("message_id", String(80), nullable=False),
    Column("stat", String(10)),
    Column("err", String(10)),
    Column("received_at", UTCDateTime, nullable=False),
)
Index("ix_sms_receipts_key", sms_receipts.c.id_key)
Index("ix_sms_receipts_received", sms_receipts.c.received_at)

CHUNK = 500
OPEN_STATES = ("queued", "sending")


# --- records --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredMO:
    id: int
    msisdn: str  # source_addr as received
    text: str
    received_at: datetime
    attempts: int = 0  # handling attempts that failed so far
    repeat_of: int | None = None  # the message this one repeats (same text, inside the window)


@dataclass(frozen=True)
class MOPart:
    id: int
    seq: int
    text: str


@dataclass(frozen=True)
class RateWindow:
    msisdn: str
    window_start: datetime
    count: int
    warned: bool


@dataclass(frozen=True)
class OutboxRow:
    id: int
    msisdn: str
    language: str
    template: str | None
    params: dict[str, Any]
    body: str | None
    kind: str
    attempts: int
    message_ids: tuple[str | None, ...]  # per part; None = not accepted yet


@dataclass(frozen=True)
class IdMatch:
    outbox_id: int
    part: int
    id_key: str


@dataclass(frozen=True)
class HeldReceipt:
    id: int
    id_key: str
    message_id: str
    stat: str | None
    err: str | None


@dataclass(frozen=True)
class PartStats:
    outbox_id: int
    state: str
    parts: int
    stats: dict[int, str | None]  # part index -> last stat


def is_transient_db_error(exc: BaseException) -> bool:
    """A database failure worth retrying later (lock timeout, lost connection...)."""
    return isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError) or (
        isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated)


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]



def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _py_time(value: Any) -> datetime:
    """A stored instant (naive UTC; SQLite gives the text SQLAlchemy wrote) as aware UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC)


_PG_SQL: dict[str, str] = {}


def _ids_json(ids: Sequence[str | None]) -> str:
    return json.dumps(list(ids))


def _outbox_row(r) -> OutboxRow:
    try:
        params = json.loads(r.params or "{}")
    except ValueError:
        params = {}
    ids = tuple(json.loads(r.message_ids)) if r.message_ids else ()
    return OutboxRow(r.id, r.msisdn, r.language, r.template, params, r.body, r.kind,
                     r.attempts, ids)


class SmsQueries:
    """Mixed into SqlUnitOfWork; uses ``self.conn`` and ``self.is_sqlite``."""

    def _sms_insert(self, table):
        return sqlite_insert(table) if self.is_sqlite else pg_insert(table)

    def _raw(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run driver SQL written with ``?`` marks; ``params`` a tuple, or a list of tuples
        for executemany. Still through the Connection: its transaction (BEGIN IMMEDIATE on
        SQLite) and its exception wrapping (is_transient_db_error) apply."""
        if not self.is_sqlite:
            pg = _PG_SQL.get(sql)
            if pg is None:
                pg = _PG_SQL[sql] = sql.replace("?", "%s")
            sql = pg
        return self.conn.exec_driver_sql(sql, params)

    def _db_time(self, instant: datetime) -> Any:
        """An aware instant as the UTCDateTime column stores it: naive UTC (as SQLAlchemy's
        SQLite text, ``2026-11-22 16:49:19.000000``, which sorts and compares as time)."""
        if instant.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass aware UTC instants")
        naive = instant.astimezone(UTC).replace(tzinfo=None)
        return naive.isoformat(" ", "microseconds") if self.is_sqlite else naive

    # --- MO: storing ------------------------------------------------------------------------

    def sms_existing_mo_keys(self, keys: Sequence[str], since: datetime) -> set[str]:
        """The keys among ``keys`` of messages received at or after ``since``."""
        found: set[str] = set()
        since_db = self._db_time(since)
        for chunk in _chunks(list(keys)):
            found.update(k for k, in self._raw(
                f"SELECT dedupe_key FROM mo_messages WHERE dedupe_key IN ({_marks(len(chunk))})"
                " AND received_at >= ?", (*chunk, since_db)))
        return found

    def sms_insert_mo(self, rows: Sequence[dict[str, Any]]) -> None:
        """rows: dedupe_key, msisdn, text, received_at. A key already stored is skipped."""
        if rows:
            self._raw(
                'INSERT INTO mo_messages (dedupe_key, msisdn, "text", state, received_at) '
                "VALUES (?, ?, ?, 'received', ?) ON CONFLICT (dedupe_key) DO NOTHING",
                [(r["dedupe_key"], r["msisdn"], r["text"], self._db_time(r["received_at"]))
                 for r in rows])

    def sms_existing_part_keys(self, keys: Sequence[str], since: datetime) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(list(keys)):
            found.update(self.conn.execute(select(mo_parts.c.dedupe_key).where(
                mo_parts.c.dedupe_key.in_(chunk), mo_parts.c.received_at >= since)
            ).scalars())
        return found

    def sms_insert_mo_parts(self, rows: Sequence[dict[str, Any]]) -> None:
        """rows: dedupe_key, msisdn, ref, total, seq, text, received_at."""
        if rows:
            self.conn.execute(
                self._sms_insert(mo_parts).on_conflict_do_nothing(index_elements=["dedupe_key"]),
                list(rows))

    def sms_open_parts(self, msisdn: str, ref: int, total: int,
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

    def sms_join_parts(self, part_ids: Sequence[int], mo_dedupe_key: str) -> None:
        """Mark parts as joined into the message stored under ``mo_dedupe_key``."""
        mo_id = self.conn.execute(select(mo_messages.c.id).where(
            mo_messages.c.dedupe_key == mo_dedupe_key)).scalar()
        for chunk in _chunks(list(part_ids)):
            self.conn.execute(update(mo_parts).where(mo_parts.c.id.in_(chunk))
                              .values(mo_id=mo_id if mo_id is not None else 0))

    def sms_purge_parts(self, before: datetime) -> int:
        return self.conn.execute(delete(mo_parts).where(mo_parts.c.received_at < before)).rowcount

    # --- MO: handling -----------------------------------------------------------------------

    def sms_claim_mo(self, limit: int, now: datetime | None = None, *,
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
        return [StoredMO(i, m, t, _py_time(at), n or 0, r) for i, m, t, at, n, r in rows]

    def sms_claim_mo_ids(self, ids: Sequence[int]) -> list[StoredMO]:
        """These messages if still received (locked on PostgreSQL), in id order."""
        c = mo_messages.c
        stmt = select(c.id, c.msisdn, c.text, c.received_at, c.attempts, c.repeat_of).where(
            c.state == "received", c.id.in_(list(ids))).order_by(c.id)
        if not self.is_sqlite:
            stmt = stmt.with_for_update(skip_locked=True)
        return [StoredMO(r.id, r.msisdn, r.text, r.received_at, r.attempts or 0, r.repeat_of)
                for r in self.conn.execute(stmt)]

    def sms_mark_mo(self, outcomes: Sequence[tuple[int, str]], now: datetime) -> None:
        """(mo id, state) pairs: 'handled', 'failed' or 'set_aside'."""
        by_state: dict[str, list[int]] = {}
        for i, state in outcomes:
            by_state.setdefault(state, []).append(i)
        now_db = self._db_time(now)
        for state, ids in by_state.items():
            for chunk in _chunks(ids):
                self._raw(f"UPDATE mo_messages SET state = ?, handled_at = ? "
                          f"WHERE id IN ({_marks(len(chunk))})", (state, now_db, *chunk))

    def sms_mo_states(self, ids: Sequence[int]) -> dict[int, str]:
        rows = self.conn.execute(select(mo_messages.c.id, mo_messages.c.state).where(
            mo_messages.c.id.in_(list(ids))))
        return {r.id: r.state for r in rows}

    def sms_members(self, msisdns: Sequence[str]) -> dict[str, str]:
        """msisdn -> language of the members among ``msisdns``."""
        found: dict[str, str] = {}
        for chunk in _chunks(list(dict.fromkeys(msisdns))):
            found.update((m, lang) for m, lang in self._raw(
                f"SELECT msisdn, language FROM members WHERE msisdn IN ({_marks(len(chunk))})",
                tuple(chunk)))
        return found

    def sms_balance_summaries(self, msisdns: Sequence[str], now: datetime
                              ) -> dict[str, tuple[int, datetime | None, int]]:
        """``balance_summary`` (spendable points, soonest expiry, points expiring then) of
        many members with one grouped query; members without live lots get (0, None, 0)."""
        out: dict[str, tuple[int, datetime | None, int]] = {}
        for chunk in _chunks(list(dict.fromkeys(msisdns))):
            for m in chunk:
                out[m] = (0, None, 0)
            total = sql_points_sum(self.is_sqlite).format("remaining")
            rows = self._raw(
                f"SELECT msisdn, expires_at, {total} FROM points_lots "
                f"WHERE msisdn IN ({_marks(len(chunk))}) AND remaining > 0 AND expires_at > ? "
                f"GROUP BY msisdn, expires_at ORDER BY msisdn, expires_at",
                (*chunk, self._db_time(now)))
            for msisdn, stored_expiry, points in rows:
                expires_at = _py_time(stored_expiry)
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

    def sms_rate_windows(self, msisdns: Sequence[str]) -> dict[str, RateWindow]:
        found: dict[str, RateWindow] = {}
        for chunk in _chunks(list(dict.fromkeys(msisdns))):
            for m, start, count, warned in self._raw(
                    f'SELECT msisdn, window_start, "count", warned FROM sms_rate '
                    f"WHERE msisdn IN ({_marks(len(chunk))})", tuple(chunk)):
                found[m] = RateWindow(m, _py_time(start), count, bool(warned))
        return found

    def sms_save_rate_windows(self, windows: Sequence[RateWindow]) -> None:
        if windows:
            self._raw(
                'INSERT INTO sms_rate (msisdn, window_start, "count", warned) VALUES (?, ?, ?, ?) '
                "ON CONFLICT (msisdn) DO UPDATE SET window_start = excluded.window_start, "
                '"count" = excluded."count", warned = excluded.warned',
                [(w.msisdn, self._db_time(w.window_start), w.count, bool(w.warned))
                 for w in windows])

    def sms_purge_rate_windows(self, before: datetime) -> int:
        return self.conn.execute(
            delete(sms_rate).where(sms_rate.c.window_start < before)).rowcount

    # --- outbox -----------------------------------------------------------------------------

    def sms_queue_outbox(self, rows: Sequence[dict[str, Any]]) -> list[int]:
        """Insert MT rows (msisdn, language, kind, template, params dict, body, dedupe_key,
        state, not_before, claimed_until, created_at); returns their ids in order."""
        if not rows:
            return []
        values = [dict(r, params=json.dumps(r.get("params") or {}, ensure_ascii=False,
                                            default=str), attempts=r.get("attempts", 0))
                  for r in rows]
        result = self.conn.execute(
            outbox.insert().returning(outbox.c.id, sort_by_parameter_order=True), values)
        return list(result.scalars())

    def sms_claim_outbox(self, now: datetime, until: datetime, limit: int) -> list[OutboxRow]:
        """Claim up to ``limit`` due rows (queued and due, or sending with a lapsed claim):
        state sending, claimed_until ``until``, attempts + 1. PostgreSQL skips rows another
        process has locked; SQLite writers are serialised by BEGIN IMMEDIATE."""
        due = or_(and_(outbox.c.state == "queued", outbox.c.not_before <= now),
                  and_(outbox.c.state == "sending", outbox.c.claimed_until < now))
        pick = select(outbox.c.id).where(due).order_by(outbox.c.not_before, outbox.c.id) \
            .limit(limit)
        if not self.is_sqlite:
            pick = pick.with_for_update(skip_locked=True)
        rows = self.conn.execute(
            update(outbox).where(outbox.c.id.in_(pick.scalar_subquery()))
            .values(state="sending", claimed_until=until, attempts=outbox.c.attempts + 1)
            .returning(outbox.c.id, outbox.c.msisdn, outbox.c.language, outbox.c.template,
                       outbox.c.params, outbox.c.body, outbox.c.kind, outbox.c.attempts,
                       outbox.c.message_ids, outbox.c.not_before))
        return [_outbox_row(r) for r in sorted(rows, key=lambda r: (r.not_before, r.id))]

    def sms_put_off(self, kinds: Iterable[str], now: datetime, until: datetime) -> int:
        """Due rows of ``kinds`` (queued, or claimed by a process that died) wait until
        ``until``; returns how many."""
        kinds = sorted(kinds)
        return self._raw(
            f"UPDATE outbox SET state = 'queued', not_before = ?, claimed_until = NULL "
            f"WHERE kind IN ({_marks(len(kinds))}) AND ((state = 'queued' AND not_before <= ?) "
            f"OR (state = 'sending' AND claimed_until < ?))",
            (self._db_time(until), *kinds, self._db_time(now), self._db_time(now))).rowcount

    def sms_set_bodies(self, bodies: Sequence[tuple[int, str]]) -> None:
        if bodies:
            self.conn.execute(
                update(outbox).where(outbox.c.id == bindparam("b_id"))
                .values(body=bindparam("b_body")),
                [dict(b_id=i, b_body=b) for i, b in bodies])

    def sms_extend_claims(self, ids: Sequence[int], until: datetime) -> None:
        for chunk in _chunks(list(ids)):
            self.conn.execute(update(outbox).where(
                outbox.c.id.in_(chunk), outbox.c.state == "sending").values(claimed_until=until))

    def sms_release_claims(self, ids: Sequence[int]) -> None:
        """Put claimed rows back in the queue, due now (a clean shutdown)."""
        for chunk in _chunks(list(ids)):
            self.conn.execute(update(outbox).where(
                outbox.c.id.in_(chunk), outbox.c.state == "sending").values(
                state="queued", claimed_until=None))

    def sms_record_submitted(self, rows: Sequence[tuple[int, Sequence[str | None]]],
                             now: datetime) -> None:
        if rows:
            now_db = self._db_time(now)
            self._raw("UPDATE outbox SET state = 'submitted', message_ids = ?, submitted_at = ?, "
                      "claimed_until = NULL, error = NULL WHERE id = ?",
                      [(_ids_json(ids), now_db, i) for i, ids in rows])

    def sms_record_retry(self, rows: Sequence[tuple[int, Sequence[str | None], datetime, str]]
                         ) -> None:
        """(id, message ids so far, not_before, error)."""
        if rows:
            self.conn.execute(
                update(outbox).where(outbox.c.id == bindparam("b_id")).values(
                    state="queued", message_ids=bindparam("b_ids"),
                    not_before=bindparam("b_not_before"), claimed_until=None,
                    error=bindparam("b_error")),
                [dict(b_id=i, b_ids=_ids_json(ids), b_not_before=nb, b_error=err[:200])
                 for i, ids, nb, err in rows])

    def sms_record_failed(self, rows: Sequence[tuple[int, Sequence[str | None], str]],
                          now: datetime) -> None:
        """(id, message ids so far, error): a permanent failure."""
        if rows:
            self.conn.execute(
                update(outbox).where(outbox.c.id == bindparam("b_id")).values(
                    state="failed", message_ids=bindparam("b_ids"), claimed_until=None,
                    error=bindparam("b_error"), final_at=now),
                [dict(b_id=i, b_ids=_ids_json(ids), b_error=err[:200]) for i, ids, err in rows])

    def sms_add_message_ids(self, rows: Sequence[tuple[int, int, str, Iterable[str]]],
                            now: datetime) -> None:
        """(outbox id, part index, message id as given, its normalised keys)."""
        now_db = self._db_time(now)
        values = [(oid, part, mid[:80], key[:90], now_db)
                  for oid, part, mid, keys in rows for key in sorted(keys)]
        if values:
            self._raw("INSERT INTO outbox_ids (outbox_id, part, message_id, id_key, stat, "
                      "created_at) VALUES (?, ?, ?, ?, NULL, ?)", values)

    def sms_outbox_depth(self) -> int:
        return int(self.conn.execute(select(func.count()).select_from(outbox).where(
            outbox.c.state.in_(OPEN_STATES))).scalar_one())

    def sms_outbox_rows(self, msisdn: str | None = None) -> list[dict[str, Any]]:
        """Every outbox row (of one number), oldest first: for tests and tools."""
        stmt = select(outbox).order_by(outbox.c.id)
        if msisdn is not None:
            stmt = stmt.where(outbox.c.msisdn == msisdn)
        return [dict(r._mapping) for r in self.conn.execute(stmt)]

    # --- receipts ---------------------------------------------------------------------------

    def sms_match_ids(self, keys: Iterable[str]) -> list[IdMatch]:
        found: list[IdMatch] = []
        for chunk in _chunks(sorted(set(keys))):
            found.extend(IdMatch(o, p, k) for o, p, k in self._raw(
                f"SELECT outbox_id, part, id_key FROM outbox_ids "
                f"WHERE id_key IN ({_marks(len(chunk))})", tuple(chunk)))
        return found

    def sms_set_part_stats(self, rows: Sequence[tuple[int, int, str | None]]) -> None:
        """(outbox id, part index, stat): every id row of that part gets the stat."""
        if rows:
            self._raw("UPDATE outbox_ids SET stat = ? WHERE outbox_id = ? AND part = ?",
                      [(s, o, p) for o, p, s in rows])

    def sms_part_stats(self, ids: Iterable[int]) -> list[PartStats]:
        out: list[PartStats] = []
        for chunk in _chunks(sorted(set(ids))):
            marks = _marks(len(chunk))
            heads = {i: (state, ids_json) for i, state, ids_json in self._raw(
                f"SELECT id, state, message_ids FROM outbox WHERE id IN ({marks})",
                tuple(chunk))}
            stats: dict[int, dict[int, str | None]] = {i: {} for i in heads}
            for oid, part, stat in self._raw(
                    f"SELECT outbox_id, part, stat FROM outbox_ids WHERE outbox_id IN ({marks}) "
                    f"ORDER BY id", tuple(chunk)):
                if oid in stats:
                    stats[oid][part] = stat
            for i, (state, ids_json) in heads.items():
                parts = len(json.loads(ids_json)) if ids_json else 0
                out.append(PartStats(i, state, parts, stats[i]))
        return out

    def sms_finalise(self, rows: Sequence[tuple[int, str, str | None]], now: datetime) -> None:
        """(outbox id, final state, error) for rows still 'submitted'."""
        if rows:
            now_db = self._db_time(now)
            self._raw("UPDATE outbox SET state = ?, error = ?, final_at = ? "
                      "WHERE id = ? AND state = 'submitted'",
                      [(s, (e or None) and e[:200], now_db, i) for i, s, e in rows])

    def sms_hold_receipts(self, rows: Sequence[tuple[str, str, str | None, str | None]],
                          now: datetime) -> None:
        """(id key, message id, stat, err) of receipts that matched nothing yet."""
        if rows:
            self.conn.execute(sms_receipts.insert(), [
                dict(id_key=k[:90], message_id=m[:80], stat=s, err=(e or None) and e[:10],
                     received_at=now) for k, m, s, e in rows])

    def sms_held_receipts(self, keys: Iterable[str] | None = None) -> list[HeldReceipt]:
        """Held receipts under ``keys`` (all of them when None), oldest first."""
        columns = "SELECT id, id_key, message_id, stat, err FROM sms_receipts"
        if keys is None:
            rows = list(self._raw(columns + " ORDER BY id"))
        else:
            rows = []
            for chunk in _chunks(sorted(set(keys))):
                rows.extend(self._raw(f"{columns} WHERE id_key IN ({_marks(len(chunk))}) "
                                      f"ORDER BY id", tuple(chunk)))
        return [HeldReceipt(*r) for r in rows]

    def sms_held_receipts_matching(self) -> list[HeldReceipt]:
        """Held receipts whose key is now recorded for some MT part."""
        rows = self.conn.execute(
            select(sms_receipts).where(sms_receipts.c.id_key.in_(
                select(outbox_ids.c.id_key))).order_by(sms_receipts.c.id))
        return [HeldReceipt(r.id, r.id_key, r.message_id, r.stat, r.err) for r in rows]

    def sms_drop_receipts(self, message_ids: Iterable[str]) -> None:
        for chunk in _chunks(sorted(set(message_ids))):
            self.conn.execute(delete(sms_receipts).where(sms_receipts.c.message_id.in_(chunk)))

    def sms_expire_receipts(self, before: datetime) -> int:
        """Forget held receipts older than ``before``; returns how many receipts (not keys)."""
        stale = self.conn.execute(select(func.count(func.distinct(sms_receipts.c.message_id)))
                                  .where(sms_receipts.c.received_at < before)).scalar_one()
        if stale:
            self.conn.execute(delete(sms_receipts).where(sms_receipts.c.received_at < before))
        return int(stale)
