"""Messaging queries for MT messages (the outbox: claims, outcomes) and delivery receipts."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, or_, select, update

from core.messaging.records import HeldReceipt, OutboxRow, PartStats
from core.store.messaging.base import QueriesBase, array_literal, chunks, marks
from core.store.queues_sql import SET_ASIDE
from core.store.tables import outbox, outbox_ids, sms_receipts

OPEN_STATES = ("queued", "sending")
OUTBOX_COLUMNS = ("msisdn", "language", "template", "params", "body", "kind", "dedupe_key",
                  "state", "attempts", "not_before", "claimed_until", "created_at")
_ROWS_PER_INSERT = 75  # 12 values a row: under SQLite's oldest limit of 999 per statement

# json.dumps with arguments builds a JSONEncoder per call (half its cost for a reply's few
# params); one encoder with the same settings gives the same text.
_params_json = json.JSONEncoder(ensure_ascii=False, default=str).encode


def _ids_json(ids: Sequence[str | None]) -> str:
    return json.dumps(list(ids))


def _parts(ids_json: str | None) -> int:
    """How many parts a row's stored message ids name."""
    if not ids_json:
        return 0
    if ids_json.startswith('["') and ids_json.endswith('"]') and '"' not in ids_json[2:-2]:
        return 1  # one JSON string (a second element would need a quote): no parse
    return len(json.loads(ids_json))


def outbox_values(rows: Sequence[dict[str, Any]], db_time: Callable[[datetime], Any]
                  ) -> list[tuple[Any, ...]]:
    """``queue_outbox``'s rows (each with a dedupe key) as values of ``OUTBOX_COLUMNS``,
    instants as stored (``db_time``: a batch's rows share theirs, converted once)."""
    stored: dict[datetime, Any] = {}

    def at(instant: datetime | None) -> Any:
        if instant is None:
            return None
        if instant not in stored:
            stored[instant] = db_time(instant)
        return stored[instant]

    return [(r["msisdn"], r["language"], r.get("template"), _params_json(r.get("params") or {}),
             r.get("body"), r["kind"], r["dedupe_key"], r["state"], r.get("attempts", 0),
             at(r["not_before"]), at(r.get("claimed_until")), at(r["created_at"]))
            for r in rows]


def _outbox_row(r) -> OutboxRow:
    try:
        params = json.loads(r.params or "{}")
    except ValueError:
        params = {}
    ids = tuple(json.loads(r.message_ids)) if r.message_ids else ()
    return OutboxRow(r.id, r.msisdn, r.language, r.template, params, r.body, r.kind,
                     r.attempts, ids)


class OutboxQueries(QueriesBase):
    # --- outbox -----------------------------------------------------------------------------

    def queue_outbox(self, rows: Sequence[dict[str, Any]]) -> list[int]:
        """Insert MT rows (msisdn, language, kind, template, params dict, body, dedupe_key,
        state, not_before, claimed_until, created_at); returns their ids in order."""
        if not rows:
            return []
        keys = [r.get("dedupe_key") for r in rows]
        if None not in keys and len(set(keys)) == len(keys):
            return self._queue_keyed(rows, keys)
        values = [dict(r, params=_params_json(r.get("params") or {}),
                       attempts=r.get("attempts", 0))
                  for r in rows]
        result = self.conn.execute(
            outbox.insert().returning(outbox.c.id, sort_by_parameter_order=True), values)
        return list(result.scalars())

    def _queue_keyed(self, rows: Sequence[dict[str, Any]], keys: list[str]) -> list[int]:
        """Rows with distinct dedupe keys (every MO reply): one multi-row INSERT per chunk,
        the ids matched back by key. SQLAlchemy's ordered RETURNING runs one INSERT per row
        on SQLite (its RETURNING order is not guaranteed), which was a fifth of a batch's
        database time."""
        ids: dict[str, int] = {}
        for chunk in chunks(outbox_values(rows, self._db_time), _ROWS_PER_INSERT):
            params = [value for row in chunk for value in row]
            row_marks = f"({marks(len(OUTBOX_COLUMNS))})"
            ids.update((k, i) for i, k in self._raw(
                f"INSERT INTO outbox ({', '.join(OUTBOX_COLUMNS)}) VALUES "
                + ", ".join([row_marks] * len(chunk)) + " RETURNING id, dedupe_key",
                tuple(params)))
        return [ids[k] for k in keys]

    def claim_outbox(self, now: datetime, until: datetime, limit: int) -> list[OutboxRow]:
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

    def put_off(self, kinds: Iterable[str], now: datetime, until: datetime) -> int:
        """Due rows of ``kinds`` (queued, or claimed by a process that died) wait until
        ``until``; returns how many."""
        kinds = sorted(kinds)
        return self._raw(
            f"UPDATE outbox SET state = 'queued', not_before = ?, claimed_until = NULL "
            f"WHERE kind IN ({marks(len(kinds))}) AND ((state = 'queued' AND not_before <= ?) "
            f"OR (state = 'sending' AND claimed_until < ?))",
            (self._db_time(until), *kinds, self._db_time(now), self._db_time(now))).rowcount

    def set_bodies(self, bodies: Sequence[tuple[int, str]]) -> None:
        if bodies:
            self.conn.execute(
                update(outbox).where(outbox.c.id == bindparam("b_id"))
                .values(body=bindparam("b_body")),
                [dict(b_id=i, b_body=b) for i, b in bodies])

    # A claim is (row id, attempts at the claim): every claim adds one to ``attempts``, so a
    # process whose claim lapsed and was taken by another (it stalled longer than the lease)
    # no longer matches and can neither extend, release nor record the row.

    def extend_claims(self, claims: Sequence[tuple[int, int]], until: datetime) -> None:
        if claims:
            self._raw("UPDATE outbox SET claimed_until = ? WHERE id = ? AND state = 'sending' "
                      "AND attempts = ?",
                      [(self._db_time(until), i, attempts) for i, attempts in claims])

    def release_claims(self, claims: Sequence[tuple[int, int]]) -> None:
        """Put claimed rows back in the queue, due now (a clean shutdown)."""
        if claims:
            self._raw("UPDATE outbox SET state = 'queued', claimed_until = NULL "
                      "WHERE id = ? AND state = 'sending' AND attempts = ?", list(claims))

    def claims_held(self, claims: Sequence[tuple[int, int]]) -> set[int]:
        """The ids among ``claims`` still claimed by that claim (locked on PostgreSQL until
        the end of the transaction, so that no claim takes them meanwhile)."""
        wanted = dict(claims)
        held: set[int] = set()
        for chunk in chunks(sorted(wanted)):
            rows = self._raw(
                f"SELECT id, attempts FROM outbox WHERE id IN ({marks(len(chunk))}) "
                "AND state = 'sending'" + ("" if self.is_sqlite else " FOR UPDATE"),
                tuple(chunk))
            held.update(i for i, attempts in rows if wanted[i] == attempts)
        return held

    def claims_taken(self, claims: Sequence[tuple[int, int]]) -> set[int]:
        wanted = dict(claims)
        taken: set[int] = set()
        for chunk in chunks(sorted(wanted)):
            rows = self._raw(f"SELECT id, attempts FROM outbox WHERE id IN ({marks(len(chunk))})",
                             tuple(chunk))
            taken.update(i for i, attempts in rows if wanted[i] != attempts)
        return taken

    def record_submitted(self, rows: Sequence[tuple[int, int, Sequence[str | None]]],
                         now: datetime) -> set[int]:
        """(id, attempts at the claim, message ids): rows still held by that claim become
        submitted; returns their ids. A row given twice: the last, as one statement a row
        would leave it."""
        if not rows:
            return set()
        now_db = self._db_time(now)
        last = {i: (attempts, ids) for i, attempts, ids in rows}
        if self.is_sqlite:  # in process: a statement is no round trip
            held = self.claims_held([(i, attempts) for i, (attempts, _) in last.items()])
            self._raw("UPDATE outbox SET state = 'submitted', message_ids = ?, submitted_at = ?, "
                      "claimed_until = NULL, error = NULL WHERE id = ?",
                      [(_ids_json(last[i][1]), now_db, i) for i in sorted(held)])
            return held
        # One round trip: the claim is checked by the update itself (in id order, as
        # ``claims_held`` locks).
        return {i for i, in self._raw(
            "UPDATE outbox SET state = 'submitted', message_ids = v.ids, submitted_at = ?, "
            "claimed_until = NULL, error = NULL FROM unnest(?::text[], ?::bigint[], ?::int[]) "
            "AS v(ids, id, attempts) WHERE outbox.id = v.id AND outbox.state = 'sending' "
            "AND outbox.attempts = v.attempts RETURNING outbox.id",
            (now_db, *self._arrays([(_ids_json(last[i][1]), i, last[i][0])
                                    for i in sorted(last)])))}

    def record_retry(self, rows: Sequence[tuple[int, Sequence[str | None], datetime, str]]
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

    def record_failed(self, rows: Sequence[tuple[int, Sequence[str | None], str]],
                      now: datetime) -> None:
        """(id, message ids so far, error): a permanent failure."""
        if rows:
            self.conn.execute(
                update(outbox).where(outbox.c.id == bindparam("b_id")).values(
                    state="failed", message_ids=bindparam("b_ids"), claimed_until=None,
                    error=bindparam("b_error"), final_at=now),
                [dict(b_id=i, b_ids=_ids_json(ids), b_error=err[:200]) for i, ids, err in rows])

    def add_message_ids(self, rows: Sequence[tuple[int, int, str, Iterable[str]]],
                        now: datetime) -> list[HeldReceipt]:
        """(outbox id, part index, message id as given, its normalised keys); returns the
        receipts held under those keys (they overtook their submit_sm_resp), oldest first."""
        now_db = self._db_time(now)
        values = [(oid, part, mid[:80], key[:90], now_db)
                  for oid, part, mid, keys in rows for key in sorted(keys)]
        if not values:
            return []
        if self.is_sqlite:
            self._raw("INSERT INTO outbox_ids (outbox_id, part, message_id, id_key, stat, "
                      "created_at) VALUES (?, ?, ?, ?, NULL, ?)", values)
            return self.held_receipts({key for *_, key, _ in values})
        # One round trip: the insert runs to completion as a part of the query.
        return [HeldReceipt(*r) for r in self._raw(
            "WITH added AS (INSERT INTO outbox_ids (outbox_id, part, message_id, id_key, stat, "
            "created_at) SELECT o, p, m, k, NULL, c FROM unnest(?::bigint[], ?::int[], "
            "?::text[], ?::text[], ?::timestamp[]) AS v(o, p, m, k, c)) "
            "SELECT id, id_key, message_id, stat, err FROM sms_receipts "
            "WHERE id_key = ANY(?::text[]) ORDER BY id",
            (*self._arrays(values), array_literal(sorted({key for *_, key, _ in values}))))]

    def outbox_depth(self) -> int:
        return int(self.conn.execute(select(func.count()).select_from(outbox).where(
            outbox.c.state.in_(OPEN_STATES))).scalar_one())

    def oldest_open_outbox(self) -> datetime | None:
        return self.conn.execute(select(func.min(outbox.c.created_at)).where(
            outbox.c.state.in_(OPEN_STATES))).scalar_one()

    def outbox_rows(self, msisdn: str | None = None) -> list[dict[str, Any]]:
        """Every outbox row (of one number), oldest first: for tests and tools."""
        stmt = select(outbox).order_by(outbox.c.id)
        if msisdn is not None:
            stmt = stmt.where(outbox.c.msisdn == msisdn)
        return [dict(r._mapping) for r in self.conn.execute(stmt)]

    # --- receipts ---------------------------------------------------------------------------

    def match_ids(self, keys: Iterable[str]) -> dict[str, list[tuple[int, int]]]:
        """id key -> the (outbox id, part index) of every MT part recorded under it."""
        found: dict[str, list[tuple[int, int]]] = {}
        for chunk in chunks(sorted(set(keys))):
            for o, p, k in self._raw(f"SELECT outbox_id, part, id_key FROM outbox_ids "
                                     f"WHERE id_key IN ({marks(len(chunk))})", tuple(chunk)):
                found.setdefault(k, []).append((o, p))
        return found

    def match_parts(self, keys: Iterable[str]) -> dict[str, list[tuple[int, int, str, int]]]:
        """id key -> (outbox id, part index, the row's state, its number of parts) of every MT
        part recorded under it: ``match_ids`` with what ``part_stats`` would read of the row,
        so that a one-part message is settled from its receipt without reading it again."""
        found: dict[str, list[tuple[int, int, str, int]]] = {}
        for chunk in chunks(sorted(set(keys))):
            for o, p, k, state, ids_json in self._raw(
                    f"SELECT i.outbox_id, i.part, i.id_key, o.state, o.message_ids "
                    f"FROM outbox_ids i JOIN outbox o ON o.id = i.outbox_id "
                    f"WHERE i.id_key IN ({marks(len(chunk))})", tuple(chunk)):
                found.setdefault(k, []).append((o, p, state, _parts(ids_json)))
        return found

    def set_part_stats(self, rows: Sequence[tuple[int, int, str | None]]) -> None:
        """(outbox id, part index, stat): every id row of that part gets the stat (the last
        given for it)."""
        if not rows:
            return
        if self.is_sqlite:
            self._raw("UPDATE outbox_ids SET stat = ? WHERE outbox_id = ? AND part = ?",
                      [(s, o, p) for o, p, s in rows])
        else:  # one statement sets each part once: the last stat given for it
            last = {(o, p): s for o, p, s in rows}
            self._raw("UPDATE outbox_ids SET stat = v.s FROM unnest(?::text[], ?::bigint[], "
                      "?::int[]) AS v(s, o, p) WHERE outbox_ids.outbox_id = v.o "
                      "AND outbox_ids.part = v.p",
                      self._arrays([(s, o, p) for (o, p), s in last.items()]))

    def part_stats(self, ids: Iterable[int]) -> list[PartStats]:
        out: list[PartStats] = []
        for chunk in chunks(sorted(set(ids))):
            in_chunk = marks(len(chunk))
            heads = {i: (state, ids_json) for i, state, ids_json in self._raw(
                f"SELECT id, state, message_ids FROM outbox WHERE id IN ({in_chunk})",
                tuple(chunk))}
            stats: dict[int, dict[int, str | None]] = {i: {} for i in heads}
            for oid, part, stat in self._raw(
                    f"SELECT outbox_id, part, stat FROM outbox_ids WHERE outbox_id IN ({in_chunk}) "
                    f"ORDER BY id", tuple(chunk)):
                if oid in stats:
                    stats[oid][part] = stat
            for i, (state, ids_json) in heads.items():
                out.append(PartStats(i, state, _parts(ids_json), stats[i]))
        return out

    def finalise(self, rows: Sequence[tuple[int, str, str | None]], now: datetime) -> None:
        """(outbox id, final state, error) for rows still 'submitted' (the first of an id
        given twice)."""
        if not rows:
            return
        now_db = self._db_time(now)
        if self.is_sqlite:
            self._raw("UPDATE outbox SET state = ?, error = ?, final_at = ? "
                      "WHERE id = ? AND state = 'submitted'",
                      [(s, (e or None) and e[:200], now_db, i) for i, s, e in rows])
        else:
            first = {i: (s, e) for i, s, e in reversed(rows)}  # one statement sets each once
            self._raw("UPDATE outbox SET state = v.s, error = v.e, final_at = ? "
                      "FROM unnest(?::text[], ?::text[], ?::bigint[]) AS v(s, e, id) "
                      "WHERE outbox.id = v.id AND outbox.state = 'submitted'",
                      (now_db, *self._arrays([(s, (e or None) and e[:200], i)
                                              for i, (s, e) in first.items()])))

    def hold_receipts(self, rows: Sequence[tuple[str, str, str | None, str | None]],
                      now: datetime) -> None:
        """(id key, message id, stat, err) of receipts that matched nothing yet."""
        if rows:
            self.conn.execute(sms_receipts.insert(), [
                dict(id_key=k[:90], message_id=m[:80], stat=s, err=(e or None) and e[:10],
                     received_at=now) for k, m, s, e in rows])

    def held_receipts(self, keys: Iterable[str] | None = None) -> list[HeldReceipt]:
        """Held receipts under ``keys`` (all of them when None), oldest first."""
        columns = "SELECT id, id_key, message_id, stat, err FROM sms_receipts"
        if keys is None:
            rows = list(self._raw(columns + " ORDER BY id"))
        else:
            rows = []
            for chunk in chunks(sorted(set(keys))):
                rows.extend(self._raw(f"{columns} WHERE id_key IN ({marks(len(chunk))}) "
                                      f"ORDER BY id", tuple(chunk)))
        return [HeldReceipt(*r) for r in rows]

    def held_receipts_matching(self) -> list[HeldReceipt]:
        """Held receipts whose key is now recorded for some MT part."""
        rows = self.conn.execute(
            select(sms_receipts).where(sms_receipts.c.id_key.in_(
                select(outbox_ids.c.id_key))).order_by(sms_receipts.c.id))
        return [HeldReceipt(r.id, r.id_key, r.message_id, r.stat, r.err) for r in rows]

    def drop_receipts(self, message_ids: Iterable[str]) -> None:
        for chunk in chunks(sorted(set(message_ids))):
            self.conn.execute(delete(sms_receipts).where(sms_receipts.c.message_id.in_(chunk)))

    def expire_receipts(self, before: datetime) -> int:
        """Forget held receipts older than ``before``; returns how many receipts (not keys)."""
        stale = self.conn.execute(select(func.count(func.distinct(sms_receipts.c.message_id)))
                                  .where(sms_receipts.c.received_at < before)).scalar_one()
        if stale:
            self.conn.execute(delete(sms_receipts).where(sms_receipts.c.received_at < before))
        return int(stale)

    # --- MT set aside -------------------------------------------------------------------------

    def record_set_aside(self, rows: Sequence[tuple[int, str]], now: datetime) -> None:
        """(outbox id, error): an MT that kept failing, out of the queue until retried."""
        for row_id, error in rows:
            self.conn.execute(update(outbox).where(outbox.c.id == row_id).values(
                state=SET_ASIDE, claimed_until=None, error=error[:200], final_at=now))
