"""Storing MO messages before they are acknowledged (database thread; the use cases).

Every deliver_sm is stored in ``mo_messages`` (dedupe key: source + the PDU's content hash, so
a redelivered MO is stored, and acted on, once). Concatenated messages: each part is stored in
``mo_parts`` before its ack; the part that completes a set (in memory, or in the database when
a restart lost the earlier parts from memory) also stores the whole message. So an
acknowledged part is never lost, and a set whose parts straddle a restart is still joined.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol


class Concatenation(Protocol):
    @property
    def ref(self) -> int: ...
    @property
    def total(self) -> int: ...
    @property
    def seq(self) -> int: ...


class IncomingMO(Protocol):
    """What the SMS session hands over for each deliver_sm (``sms.esme_types.MOMessage``):
    ``text`` is the whole message when ``complete``, ``segment_text`` this part's text,
    ``dedup_key`` a hash of the PDU's content."""

    @property
    def source_addr(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def segment_text(self) -> str: ...
    @property
    def dedup_key(self) -> str: ...
    @property
    def concat(self) -> Concatenation | None: ...
    @property
    def complete(self) -> bool: ...


DEDUPE_WINDOW_S = 120.0  # smpp.mo_dedupe_window_s


def whole_key(source: str, ref: int, total: int, text: str) -> str:
    """The identity of a joined message: the same set redelivered joins to the same key."""
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]
    return f"{source}:c{ref}.{total}:{digest}"


class _Keys:
    """Windowed dedupe keys. A deliver_sm carries no unique id, only its content, so the
    same content from the same number is a redelivery when it comes within ``window``
    seconds of the first copy, and a new message (the subscriber sending JF again
    tomorrow) after that. Stored keys carry the window number; a lookup checks this window
    and the previous one, limited to ``window`` seconds back."""

    def __init__(self, now: datetime, window: float) -> None:
        self.bucket = int(now.timestamp() // window)
        self.since = now - timedelta(seconds=window)

    def key(self, base: str) -> str:
        return f"{base}@{self.bucket}"

    def lookups(self, base: str) -> tuple[str, str]:
        return f"{base}@{self.bucket}", f"{base}@{self.bucket - 1}"


def store_mo_batch(uow, rules, mos: Sequence[IncomingMO], now: datetime,
                   window: float = DEDUPE_WINDOW_S) -> list[bool]:
    """Store MO messages (and concatenation parts); returns per message whether it was new
    (False: a redelivery of something stored within the dedupe window; a whole message is
    then stored again as a repeat of the first, see ``core.messaging.retries``)."""
    keys_ = _Keys(now, window)
    whole: dict[str, dict[str, Any]] = {}
    parts: dict[str, dict[str, Any]] = {}
    bases: list[str] = []
    for mo in mos:
        source = mo.source_addr[:20]
        if mo.concat is None:
            base = f"{source}:{mo.dedup_key}"
            whole.setdefault(base, dict(dedupe_key=keys_.key(base), msisdn=source,
                                        text=mo.text, received_at=now))
        else:
            base = f"{source}:p:{mo.dedup_key}"
            parts.setdefault(base, dict(dedupe_key=keys_.key(base), msisdn=source,
                                        ref=mo.concat.ref, total=mo.concat.total,
                                        seq=mo.concat.seq, text=mo.segment_text,
                                        received_at=now))
        bases.append(base)
    known: set[str] = set()
    if whole:
        seen = uow.messaging.existing_mo_keys([k for b in whole for k in keys_.lookups(b)],
                                        keys_.since)
        known |= {b for b in whole if seen.intersection(keys_.lookups(b))}
    if parts:
        seen = uow.messaging.existing_part_keys([k for b in parts for k in keys_.lookups(b)],
                                          keys_.since)
        known |= {b for b in parts if seen.intersection(keys_.lookups(b))}
    uow.messaging.insert_mo([r for b, r in whole.items() if b not in known])
    earlier: set[str] = set()  # a second copy in this very batch is a repeat too
    repeats = []
    for i, b in enumerate(bases):
        if b in whole and (b in known or b in earlier):
            repeats.append((i, b))
        earlier.add(b)
    if repeats:
        _store_repeats(uow, mos, repeats, whole, keys_, now)
    if parts:
        uow.messaging.insert_mo_parts([r for b, r in parts.items() if b not in known])
        _join_parts(uow, mos, now, keys_)
    first: set[str] = set()
    new = []
    for base in bases:
        new.append(base not in known and base not in first)
        first.add(base)
    return new


def _store_repeats(uow, mos: Sequence[IncomingMO], repeats: list[tuple[int, str]],
                   whole: dict[str, dict[str, Any]], keys_: _Keys, now: datetime) -> None:
    """Store each repeated whole message again, pointing at the first copy."""
    ids = uow.messaging.mo_ids([k for _, b in repeats for k in keys_.lookups(b)])
    stamp = int(now.timestamp() * 1_000_000)
    rows = []
    for i, base in repeats:
        first = min((ids[k] for k in keys_.lookups(base) if k in ids), default=None)
        row = whole[base]
        rows.append(dict(dedupe_key=f"{keys_.key(base)}~{stamp}.{i}", msisdn=row["msisdn"],
                         text=mos[i].text, received_at=now, repeat_of=first))
    uow.messaging.insert_mo_repeats(rows)


def _join_parts(uow, mos: Sequence[IncomingMO], now: datetime, keys_: _Keys) -> None:
    sets: dict[tuple[str, int, int], IncomingMO | None] = {}
    for mo in mos:
        if mo.concat is None:
            continue
        key = (mo.source_addr[:20], mo.concat.ref, mo.concat.total)
        if mo.complete:
            sets[key] = mo
        else:
            sets.setdefault(key, None)
    for (source, ref, total), complete in sets.items():
        stored = uow.messaging.open_parts(source, ref, total, keys_.since)
        if complete is not None:
            text = complete.text  # joined in memory from the raw payloads: exact
        elif len(stored) >= total:
            text = "".join(p.text for p in sorted(stored, key=lambda p: p.seq)[:total])
        else:
            continue
        base = whole_key(source, ref, total, text)
        existing = uow.messaging.existing_mo_keys(keys_.lookups(base), keys_.since)
        if existing:  # this set was joined already (a redelivered set)
            key = min(existing)
        else:
            key = keys_.key(base)
            uow.messaging.insert_mo([dict(dedupe_key=key, msisdn=source, text=text,
                                    received_at=now)])
        uow.messaging.join_parts([p.id for p in stored], key)


def housekeeping(uow, rules, now: datetime) -> tuple[int, int]:
    """Forget concatenation parts and rate windows older than a day: (parts, windows)."""
    day_ago = now - timedelta(days=1)
    parts = uow.messaging.purge_parts(day_ago)
    windows = uow.messaging.purge_rate_windows(day_ago)
    return parts, windows
