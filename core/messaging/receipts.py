"""Delivery receipts (database thread; the use cases): matched to MT parts by normalised
message id (the SMS channel gives the keys), final state stored.

Ids are compared through ``normalise_message_id`` keys (case, leading zeros, hex vs decimal).
A receipt can arrive before the submit_sm_resp of its message was processed (or recorded): a
receipt that matches nothing is *held* (``sms_receipts``) and matched when the id is recorded
(``core.messaging.outbox.record_events``) or by the periodic sweep (which also covers the race
between two PostgreSQL transactions); held receipts older than ``hold_s`` are dropped and counted as
``unmatched``. The receipt is acknowledged once stored (matched or held); on a database error
the SMSC gets a temporary error and redelivers it.

Final states of an outbox row (every part must have a final receipt): ``delivered`` when all
parts were delivered, else the state of the first part that was not: ``undeliverable``,
``expired``, ``rejected``, ``deleted`` or ``unknown``. Intermediate receipts (ENROUTE,
ACCEPTD) are stored on the part but change nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.messaging.records import HeldReceipt

FINAL_STATES = {
    "DELIVRD": "delivered", "UNDELIV": "undeliverable", "EXPIRED": "expired",
    "REJECTD": "rejected", "DELETED": "deleted", "UNKNOWN": "unknown",
}


@dataclass(frozen=True)
class ReceiptItem:
    keys: frozenset[str]
    message_id: str
    stat: str | None
    err: str | None



def settle(uow, outbox_ids: Iterable[int], errs: dict[tuple[int, int], str | None],
           now: datetime, decided: Iterable[tuple[int, str, str | None]] = ()) -> None:
    """Give each ``submitted`` row whose parts all have a final receipt its final state
    (``decided``: final states already known, stored with them)."""
    final = list(decided)
    ids = set(outbox_ids)
    if ids:
        for ps in uow.messaging.part_stats(ids):
            verdict = _verdict(ps.outbox_id, ps.state, [ps.stats.get(i) for i in range(ps.parts)],
                               errs)
            if verdict is not None:
                final.append(verdict)
    uow.messaging.finalise(final, now)


def _verdict(outbox_id: int, state: str, stats: list[str | None],
             errs: dict[tuple[int, int], str | None]) -> tuple[int, str, str | None] | None:
    """(outbox id, final state, error) of a ``submitted`` row whose parts (``stats``, by part
    index) all have a final receipt; None while it has none."""
    if state != "submitted" or not stats or not all(s in FINAL_STATES for s in stats):
        return None
    bad = next((i for i, s in enumerate(stats) if s != "DELIVRD"), None)
    if bad is None:
        return (outbox_id, "delivered", None)
    err = errs.get((outbox_id, bad))
    return (outbox_id, FINAL_STATES[stats[bad]],
            f"part {bad + 1}/{len(stats)} {stats[bad]}" + (f" err:{err}" if err else ""))


def _match(uow, items: list[ReceiptItem], now: datetime
           ) -> tuple[Counter, list[ReceiptItem], list[ReceiptItem]]:
    """Apply receipts to the parts they name; returns (counts, matched, unmatched)."""
    counts: Counter = Counter()
    keys = set().union(*(i.keys for i in items)) if items else set()
    by_key = uow.messaging.match_parts(keys)
    heads: dict[int, tuple[str, int]] = {}  # outbox id -> (state, parts)
    stats: dict[tuple[int, int], str | None] = {}
    errs: dict[tuple[int, int], str | None] = {}
    matched, unmatched = [], []
    for item in items:
        candidates = set()
        for k in item.keys:
            for o, p, state, parts in by_key.get(k, ()):
                candidates.add((o, p))
                heads[o] = (state, parts)
        if not candidates:
            unmatched.append(item)
            continue
        target = max(candidates)  # ambiguous (decimal/hex) ids: the newest message wins
        stats[target] = item.stat
        errs[target] = item.err
        matched.append(item)
        counts[FINAL_STATES.get(item.stat or "", "intermediate")] += 1
    uow.messaging.set_part_stats([(o, p, s) for (o, p), s in stats.items()])
    # A one-part message (most replies) is settled by its receipt's stat, as ``settle``
    # would find it on reading the part back; only longer messages are read again.
    decided, reread = [], set()
    for (o, p), stat in stats.items():
        state, parts = heads[o]
        if parts == 1 and p == 0:
            verdict = _verdict(o, state, [stat], errs)
            if verdict is not None:
                decided.append(verdict)
        else:
            reread.add(o)
    settle(uow, reread, errs, now, decided)
    return counts, matched, unmatched


def apply_receipts(uow, rules, items: list[ReceiptItem], now: datetime) -> dict[str, int]:
    """Store a batch of receipts: matched ones on their parts, the others held."""
    counts = hold_unmatched(uow, items, now)
    return dict(counts)


def hold_unmatched(uow, items: list[ReceiptItem], now: datetime) -> Counter:
    """Apply receipts; hold those that match nothing yet (no commit)."""
    counts, _, unmatched = _match(uow, items, now)
    uow.messaging.hold_receipts([(k, i.message_id, i.stat, i.err)
                           for i in unmatched for k in sorted(i.keys)], now)
    if unmatched:
        counts["held"] += len(unmatched)
    return counts


def apply_held(uow, held: list[HeldReceipt], now: datetime) -> dict[str, int]:
    """Match held receipts (no commit); the matched ones are forgotten."""
    grouped: dict[tuple[str, str | None, str | None], set[str]] = {}
    for h in held:  # oldest first, so a later receipt for the same part wins
        grouped.setdefault((h.message_id, h.stat, h.err), set()).add(h.id_key)
    items = [ReceiptItem(frozenset(k), mid, stat, err)
             for (mid, stat, err), k in grouped.items()]
    counts, matched, _ = _match(uow, items, now)
    uow.messaging.drop_receipts([i.message_id for i in matched])
    return dict(counts)


def sweep_receipts(uow, rules, now: datetime, hold_s: float) -> dict[str, int]:
    """Match held receipts whose id got recorded since; drop those held too long."""
    held = uow.messaging.held_receipts_matching()
    counts = Counter(apply_held(uow, held, now) if held else {})
    expired = uow.messaging.expire_receipts(now - timedelta(seconds=hold_s))
    if expired:
        counts["unmatched"] += expired
    return dict(counts)
