"""A one-part message is settled straight from its receipt (``core.messaging.receipts``):
the same final state and error as reading its part stats back (``settle``), without the
read; longer messages are still read back."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import event

from core.messaging.outbox import Outcome, record_events
from core.messaging.receipts import ReceiptItem, settle
from sms.pdu import normalise_message_id

# Receipts per message, batch by batch: (stat, err) in the order they arrive.
SCENARIOS = [
    [[("DELIVRD", "000")]],
    [[("UNDELIV", "012")]],
    [[("EXPIRED", None)]],
    [[("REJECTD", "")]],
    [[("DELETED", "001")], [("DELIVRD", "000")]],  # a second final receipt changes nothing
    [[("UNKNOWN", "099")]],
    [[("ENROUTE", None)]],
    [[("ACCEPTD", None)], [("DELIVRD", "000")]],
    [[("ENROUTE", None), ("UNDELIV", "005")]],  # both in one batch: the later one counts
    [[("DELIVRD", "000"), ("ENROUTE", None)]],
    [[(None, None)], [("EXPIRED", "7")]],
]


def mid(outbox_id: int, part: int = 0) -> str:
    """An SMSC message id no other row's id can be read as (not hex, not decimal)."""
    return f"m{outbox_id}p{part}"


def queued(uow, now, n: int) -> list:
    uow.messaging.queue_outbox([
        dict(msisdn=f"1380013{i:04}", language="en", kind="reply", template="join",
             params={}, body="hello", dedupe_key=f"t:{i}", state="queued", not_before=now,
             claimed_until=None, created_at=now) for i in range(n)])
    return uow.messaging.claim_outbox(now, now + timedelta(minutes=1), n)


def final(uow, ids: list[int]) -> dict[int, tuple]:
    rows = {r["id"]: r for r in uow.messaging.outbox_rows()}
    return {i: (rows[i]["state"], rows[i]["error"]) for i in ids}


def test_a_one_part_message_settles_from_its_receipt_as_from_its_part_stats(store, rules, now):
    with store.unit_of_work() as uow:
        rows = queued(uow, now, 2 * len(SCENARIOS))
        outcomes = [Outcome(r.id, (mid(r.id),), ((0, mid(r.id)),), "submitted",
                            attempt=r.attempts) for r in rows]
        record_events(uow, rules, outcomes, [], now, normalise_message_id)
    direct = {rows[2 * i].id: s for i, s in enumerate(SCENARIOS)}
    reread = {rows[2 * i + 1].id: s for i, s in enumerate(SCENARIOS)}
    for step in range(max(len(s) for s in SCENARIOS)):
        at = now + timedelta(seconds=step + 1)
        with store.unit_of_work() as uow:
            items = [ReceiptItem(normalise_message_id(mid(i)), mid(i), stat, err)
                     for i, batches in direct.items() if step < len(batches)
                     for stat, err in batches[step]]
            record_events(uow, rules, [], items, at, normalise_message_id)
            for i, batches in reread.items():  # what matching them did before: read back
                if step < len(batches):
                    stat, err = batches[step][-1]
                    uow.messaging.set_part_stats([(i, 0, stat)])
                    settle(uow, [i], {(i, 0): err}, at)
    with store.unit_of_work(write=False) as uow:
        got = final(uow, list(direct) + list(reread))
    for i, (a, b) in enumerate(zip(direct, reread, strict=True)):
        assert got[a] == got[b], SCENARIOS[i]
    assert got[rows[0].id] == ("delivered", None)
    assert got[rows[2].id] == ("undeliverable", "part 1/1 UNDELIV err:012")


@pytest.mark.parametrize("parts", [1, 2])
def test_only_a_longer_message_is_read_back(store, rules, now, parts):
    with store.unit_of_work() as uow:
        rows = queued(uow, now, 3)
        ids = {r.id: tuple(mid(r.id, p) for p in range(parts)) for r in rows}
        record_events(uow, rules, [Outcome(r.id, ids[r.id], tuple(enumerate(ids[r.id])),
                                           "submitted", attempt=r.attempts) for r in rows],
                      [], now, normalise_message_id)
    reads = []

    def seen(conn, cursor, statement, *args):
        if "FROM outbox WHERE id IN" in statement:
            reads.append(statement)

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        with store.unit_of_work() as uow:
            record_events(uow, rules, [], [
                ReceiptItem(normalise_message_id(m), m, "DELIVRD", "000")
                for mids in ids.values() for m in mids], now, normalise_message_id)
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    with store.unit_of_work(write=False) as uow:
        assert set(final(uow, list(ids)).values()) == {("delivered", None)}
    assert len(reads) == (0 if parts == 1 else 1)


@given(st.lists(st.one_of(st.none(), st.text(max_size=12)), max_size=4))
def test_the_part_count_of_stored_ids_is_their_json_length(ids):
    from core.store.messaging.outbox import _ids_json, _parts

    assert _parts(_ids_json(ids)) == len(ids)
    assert _parts(None) == 0 and _parts("") == 0
