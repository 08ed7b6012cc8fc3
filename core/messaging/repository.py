"""The messaging repository as the core sees it: the MO store, the outbox, receipts.

The SQL lives in ``core.store.messaging``; the unit of work exposes it as ``uow.messaging``.
Every method runs inside the caller's unit of work (it never commits).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any, Protocol

from core.domain import LedgerEntry, Member, Order, Reward
from core.messaging.records import (
    HeldReceipt,
    MOPart,
    OutboxRow,
    PartStats,
    RateWindow,
    StoredMO,
)


class MessagingRepository(Protocol):
    def connection_lost(self, exc: BaseException) -> bool:
        """The database went away: nothing to do with the message, retry the batch later."""

    # --- MO messages -----------------------------------------------------------------------------

    def existing_mo_keys(self, keys: Sequence[str], since: datetime) -> set[str]:
        """The keys among ``keys`` of messages received at or after ``since``."""

    def insert_mo(self, rows: Sequence[dict[str, Any]]) -> None:
        """rows: dedupe_key, msisdn, text, received_at. A key already stored is skipped."""

    def existing_part_keys(self, keys: Sequence[str], since: datetime) -> set[str]:
        ...

    def insert_mo_parts(self, rows: Sequence[dict[str, Any]]) -> None:
        """rows: dedupe_key, msisdn, ref, total, seq, text, received_at."""

    def open_parts(self, msisdn: str, ref: int, total: int,
                   since: datetime) -> list[MOPart]:
        """The not yet joined parts of one set received since ``since``, by seq (the
        newest copy of each seq)."""

    def join_parts(self, part_ids: Sequence[int], mo_dedupe_key: str) -> None:
        """Mark parts as joined into the message stored under ``mo_dedupe_key``."""

    def purge_parts(self, before: datetime) -> int:
        ...

    def claim_mo(self, limit: int, now: datetime | None = None, *,
                 only_from: str | None = None, after_id: int = 0) -> list[StoredMO]:
        """The oldest received messages (those due: not waiting for a retry after ``now``;
        ``only_from``: from that source, with ids above ``after_id``); on PostgreSQL locked
        (SKIP LOCKED) until commit."""

    def claim_mo_ids(self, ids: Sequence[int]) -> list[StoredMO]:
        """These messages if still received (locked on PostgreSQL), in id order."""

    def finish_handling(self, windows: Sequence[RateWindow], replies: Sequence[dict[str, Any]],
                        states: Sequence[tuple[int, str]], now: datetime) -> list[int]:
        """What a handled batch writes: save the senders' rate windows, queue the replies
        (rows as ``queue_outbox``) and give each MO its state ((mo id, state) pairs:
        'handled', 'failed' or 'set_aside'); returns the replies' ids in order. One
        statement on PostgreSQL (a round trip each was a tenth of a round's fixed cost)."""

    def mo_states(self, ids: Sequence[int]) -> dict[int, str]:
        ...

    def member_languages(self, msisdns: Sequence[str]) -> dict[str, str]:
        """msisdn -> language of the members among ``msisdns`` (who is a member is decided
        in one place: ``members_by_msisdn``)."""

    # --- batched reads of the read-only keywords (one query per fact for a whole batch) ----

    def members_by_msisdn(self, msisdns: Sequence[str]) -> dict[str, Member]:
        """msisdn -> the member, for the members among ``msisdns``: the one place the SMS
        channel decides who is a member (and in which language she is answered)."""

    def earned_points_by_member(self, msisdns: Sequence[str], since: date,
                                sources: Sequence[str]) -> dict[str, int]:
        """``earned_points`` of many members: points of lots from ``sources`` earned on or
        after ``since``. A member whose total is no real balance is left out (her own query
        raises ``AccountNeedsAttention``)."""

    def recent_history(self, msisdns: Sequence[str], limit: int
                       ) -> dict[str, list[LedgerEntry]]:
        """``history(msisdn, 0, limit)`` of many members: the newest ledger entries first."""

    def recent_orders(self, msisdns: Sequence[str], limit: int, kind: str | None = None
                      ) -> dict[str, list[Order]]:
        """``member_orders(msisdn, limit, kind)`` of many members, deliveries included:
        the newest orders first."""

    def catalogue_rewards(self) -> list[Reward]:
        """``list_rewards()``: every reward, in catalogue order, with its tier prices."""

    def balance_summaries(self, msisdns: Sequence[str], now: datetime
                              ) -> dict[str, tuple[int, datetime | None, int]]:
        """``balance_summary`` (spendable points, soonest expiry, points expiring then) of
        many members with one grouped query; members without live lots get (0, None, 0)."""

    def rate_windows(self, msisdns: Sequence[str]) -> dict[str, RateWindow]:
        ...

    def purge_rate_windows(self, before: datetime) -> int:
        ...

    def mo_retry_later(self, mo_id: int, attempts: int, not_before: datetime,
                       error: str | None) -> None:
        ...

    def mo_set_aside(self, mo_id: int, attempts: int, error: str, now: datetime) -> None:
        ...

    def mo_ids(self, keys: Sequence[str]) -> dict[str, int]:
        """dedupe key -> id of the stored messages among ``keys``."""

    def last_mo_id(self) -> int:
        ...

    def insert_mo_repeats(self, rows: Sequence[dict[str, Any]]) -> None:
        """rows: dedupe_key, msisdn, text, received_at, repeat_of."""

    def mo_outcome(self, mo_id: int) -> tuple[str | None, dict[str, Any] | None]:
        """(state of the message, its reply's outbox row or None)."""

    # --- MT messages and receipts ----------------------------------------------------------------

    def queue_outbox(self, rows: Sequence[dict[str, Any]]) -> list[int]:
        """Insert MT rows (msisdn, language, kind, template, params dict, body, dedupe_key,
        state, not_before, claimed_until, created_at); returns their ids in order."""

    def claim_outbox(self, now: datetime, until: datetime, limit: int) -> list[OutboxRow]:
        """Claim up to ``limit`` due rows (queued and due, or sending with a lapsed claim):
        state sending, claimed_until ``until``, attempts + 1. PostgreSQL skips rows another
        process has locked; SQLite writers are serialised by BEGIN IMMEDIATE."""

    def put_off(self, kinds: Iterable[str], now: datetime, until: datetime) -> int:
        """Due rows of ``kinds`` (queued, or claimed by a process that died) wait until
        ``until``; returns how many."""

    def set_bodies(self, bodies: Sequence[tuple[int, str]]) -> None:
        ...

    def extend_claims(self, claims: Sequence[tuple[int, int]], until: datetime) -> None:
        """(id, attempts at the claim): rows claimed again since are left alone."""

    def release_claims(self, claims: Sequence[tuple[int, int]]) -> None:
        """Put claimed rows back in the queue, due now (a clean shutdown)."""

    def claims_held(self, claims: Sequence[tuple[int, int]]) -> set[int]:
        """The ids among (id, attempts at the claim) still held by that claim (locked)."""

    def claims_taken(self, claims: Sequence[tuple[int, int]]) -> set[int]:
        """The ids among (id, attempts at the claim) claimed again since (by any process)."""

    def record_submitted(self, rows: Sequence[tuple[int, int, Sequence[str | None]]],
                         now: datetime) -> set[int]:
        """(id, attempts at the claim, message ids): rows still held by that claim become
        submitted (the check and the write one statement); returns their ids."""

    def record_retry(self, rows: Sequence[tuple[int, Sequence[str | None], datetime, str]]
                         ) -> None:
        """(id, message ids so far, not_before, error)."""

    def record_failed(self, rows: Sequence[tuple[int, Sequence[str | None], str]],
                      now: datetime) -> None:
        """(id, message ids so far, error): a permanent failure."""

    def add_message_ids(self, rows: Sequence[tuple[int, int, str, Iterable[str]]],
                        now: datetime) -> list[HeldReceipt]:
        """(outbox id, part index, message id as given, its normalised keys); returns the
        receipts held under those keys (they overtook their submit_sm_resp), oldest first."""

    def outbox_depth(self) -> int:
        ...

    def oldest_open_outbox(self) -> datetime | None:
        """When the oldest MT row not yet accepted (queued or sending) was queued."""

    def outbox_rows(self, msisdn: str | None = None) -> list[dict[str, Any]]:
        """Every outbox row (of one number), oldest first: for tests and tools."""

    def match_ids(self, keys: Iterable[str]) -> dict[str, list[tuple[int, int]]]:
        """id key -> the (outbox id, part index) of every MT part recorded under it."""

    def match_parts(self, keys: Iterable[str]) -> dict[str, list[tuple[int, int, str, int]]]:
        """id key -> (outbox id, part index, the row's state, its number of parts) of every
        MT part recorded under it."""

    def set_part_stats(self, rows: Sequence[tuple[int, int, str | None]]) -> None:
        """(outbox id, part index, stat): every id row of that part gets the stat."""

    def part_stats(self, ids: Iterable[int]) -> list[PartStats]:
        ...

    def finalise(self, rows: Sequence[tuple[int, str, str | None]], now: datetime) -> None:
        """(outbox id, final state, error) for rows still 'submitted'."""

    def hold_receipts(self, rows: Sequence[tuple[str, str, str | None, str | None]],
                      now: datetime) -> None:
        """(id key, message id, stat, err) of receipts that matched nothing yet."""

    def held_receipts(self, keys: Iterable[str] | None = None) -> list[HeldReceipt]:
        """Held receipts under ``keys`` (all of them when None), oldest first."""

    def held_receipts_matching(self) -> list[HeldReceipt]:
        """Held receipts whose key is now recorded for some MT part."""

    def drop_receipts(self, message_ids: Iterable[str]) -> None:
        ...

    def expire_receipts(self, before: datetime) -> int:
        """Forget held receipts older than ``before``; returns how many receipts (not keys)."""

    def record_set_aside(self, rows: Sequence[tuple[int, str]], now: datetime) -> None:
        """(outbox id, error): an MT that kept failing, out of the queue until retried."""
