"""The messaging queries' driver SQL (``QueriesBase._raw``) on a DBAPI cursor of the unit of
work's connection: the same transaction, results and exceptions as through
``Connection.exec_driver_sql`` (taken while anyone listens to the cursor events); instants
stored and read back as before their shortcuts."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import create_engine, event
from sqlalchemy import exc as sa_exc

from core.messaging.records import RateWindow
from core.store.messaging.base import QueriesBase, array_literal, py_time
from tests.conftest import PG_URL


@contextmanager
def listened(store):
    """A cursor-event listener (so ``_raw`` takes the Connection's path); yields the SQL."""
    seen: list[str] = []

    def listener(conn, cursor, statement, *args):
        seen.append(statement)

    event.listen(store.engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        event.remove(store.engine, "before_cursor_execute", listener)


@contextmanager
def either_path(store, through_connection: bool):
    if through_connection:
        with listened(store) as seen:
            yield seen
    else:
        yield None


@pytest.mark.parametrize("through_connection", [False, True])
def test_rows_rowcount_and_the_transaction(store, now, through_connection):
    windows = [RateWindow("13800138000", now, 1, False), RateWindow("13900139000", now, 2, True)]
    with either_path(store, through_connection) as seen:
        with store.unit_of_work() as uow:
            q = uow.messaging
            q.save_rate_windows(windows)  # the unit's first statement begins its transaction
            assert uow.conn.in_transaction()
            assert q.rate_windows(["13800138000", "13900139000", "13700137000"]) == {
                w.msisdn: w for w in windows}
            rows = q._raw("SELECT msisdn FROM sms_rate ORDER BY msisdn")
            assert [tuple(r) for r in rows] == [("13800138000",), ("13900139000",)]
            assert q._raw("UPDATE sms_rate SET warned = ? WHERE \"count\" >= ?",
                          (True, 1)).rowcount == 2
            uow.rollback()
            assert q.rate_windows(["13800138000"]) == {}  # rolled back with its transaction
            q.save_rate_windows(windows[:1])  # begins the next transaction after a rollback
        with store.unit_of_work() as uow:
            assert set(uow.messaging.rate_windows(["13800138000", "13900139000"])) == {
                "13800138000"}
    if through_connection:
        assert any("sms_rate" in s for s in seen)  # every statement seen by the listener


@pytest.mark.parametrize("through_connection", [False, True])
def test_a_driver_error_is_sqlalchemys_and_the_unit_goes_on(store, now, through_connection):
    with either_path(store, through_connection):
        with store.unit_of_work() as uow:
            q = uow.messaging
            q.insert_mo([dict(dedupe_key="k1", msisdn="13800138000", text="JF",
                              received_at=now)])
            with pytest.raises(sa_exc.IntegrityError) as caught:
                q._raw('INSERT INTO mo_messages (dedupe_key, msisdn, "text", state, '
                       "received_at) VALUES (?, ?, ?, 'received', ?)",
                       ("k1", "13800138000", "JF", q._db_time(now)))
            assert not q.connection_lost(caught.value)
            uow.rollback()
            q.insert_mo([dict(dedupe_key="k2", msisdn="13800138000", text="JF",
                              received_at=now + timedelta(seconds=1))])
        with store.unit_of_work() as uow:
            assert [m.text for m in uow.messaging.claim_mo(10)] == ["JF"]


@pytest.mark.parametrize("through_connection", [False, True])
def test_a_lost_connection_is_seen_as_lost(store, through_connection):
    with either_path(store, through_connection):
        with pytest.raises(sa_exc.DBAPIError) as caught:
            with store.unit_of_work() as uow:
                uow.messaging.rate_windows(["13800138000"])
                uow.conn.connection.driver_connection.close()  # the server went away
                uow.messaging.rate_windows(["13800138000"])
        assert uow.messaging.connection_lost(caught.value)
    with store.unit_of_work() as uow:  # the pool gives a working connection again
        assert uow.messaging.rate_windows(["13800138000"]) == {}


def _reply(msisdn: str, key: str, now: datetime) -> dict:
    return dict(msisdn=msisdn, language="zh", kind="reply", template="balance", params={},
                body=None, dedupe_key=key, state="sending", not_before=now,
                claimed_until=now + timedelta(minutes=1), created_at=now)


@pytest.mark.parametrize("through_connection", [False, True])
def test_writes_of_many_rows_keep_each_rows_values_and_order(store, now, through_connection):
    # PostgreSQL writes these as one statement over arrays, SQLite as executemany: the rows
    # must come out the same, in the order given (MO ids are the order of arrival).
    later = now + timedelta(seconds=30)
    with either_path(store, through_connection), store.unit_of_work() as uow:
        q = uow.messaging
        q.insert_mo([dict(dedupe_key=k, msisdn=m, text=t, received_at=now)
                     for k, m, t in (("b", "13900139000", "积分"), ("a", "13800138000", "JF"),
                                     ("c", "13700137000", "DJ"),
                                     ("d", "13600136000", 'LB "a,b" \\{x} NULL'))])
        q.insert_mo([dict(dedupe_key="a", msisdn="13800138000", text="again", received_at=now)])
        assert [(m.msisdn, m.text) for m in q.claim_mo(10)] == [
            ("13900139000", "积分"), ("13800138000", "JF"), ("13700137000", "DJ"),
            ("13600136000", 'LB "a,b" \\{x} NULL')]
        q.save_rate_windows([RateWindow("13800138000", now, 1, False)])
        q.save_rate_windows([RateWindow("13900139000", later, 3, True),
                             RateWindow("13800138000", later, 2, True)])
        assert q.rate_windows(["13800138000", "13900139000"]) == {
            "13800138000": RateWindow("13800138000", later, 2, True),
            "13900139000": RateWindow("13900139000", later, 3, True)}
        one, two, three = q.queue_outbox([_reply("13800138000", "mo:1", now),
                                          _reply("13900139000", "mo:2", now),
                                          _reply("13700137000", "mo:3", now)])
        # Only rows still held by the claim given (attempts at the claim) are recorded.
        assert q.record_submitted([(one, 0, ["m1"]), (two, 0, ["m2a"]),
                                   (two, 0, ["m2a", "m2b"]), (three, 7, ["lost"])],
                                  later) == {one, two}
        q.hold_receipts([("m2b", "m2b", "DELIVRD", None), ("zz", "zz", "DELIVRD", None)], now)
        overtaken = q.add_message_ids([(one, 0, "m1", {"m1", "x1"}), (two, 0, "m2a", {"m2a"}),
                                       (two, 1, "m2b", {"m2b"})], later)
        assert [(h.id_key, h.stat) for h in overtaken] == [("m2b", "DELIVRD")]
        q.set_part_stats([(two, 1, "ENROUTE"), (two, 1, "UNDELIV"), (one, 0, "DELIVRD")])
        # A part's last stat and a row's first verdict are kept (as one statement a row would
        # leave them); a row not submitted is left alone.
        q.finalise([(one, "delivered", None), (one, "failed", "late"),
                    (three, "delivered", None), (two, "failed", "part 2/2 UNDELIV")], later)
        rows = {r["id"]: r for r in q.outbox_rows()}
        assert [(rows[i]["state"], rows[i]["error"]) for i in (one, two, three)] == [
            ("delivered", None), ("failed", "part 2/2 UNDELIV"), ("sending", None)]
        assert rows[two]["message_ids"] == '["m2a", "m2b"]'
        assert rows[one]["claimed_until"] is None and rows[three]["claimed_until"] is not None
        assert q.match_ids(["m1", "x1", "m2b", "nope"]) == {
            "m1": [(one, 0)], "x1": [(one, 0)], "m2b": [(two, 1)]}
        assert sorted((p.outbox_id, p.stats) for p in q.part_stats([one, two])) == [
            (one, {0: "DELIVRD"}), (two, {0: None, 1: "UNDELIV"})]


def test_a_handled_batchs_writes_leave_what_the_three_statements_would(store, now):
    # One statement on PostgreSQL (rate windows and MO states as WITH parts of the outbox
    # insert), three on SQLite: rate windows saved, replies queued with their values and ids
    # in order, MO marked.
    later = now + timedelta(seconds=30)
    with store.unit_of_work() as uow:
        q = uow.messaging
        q.insert_mo([dict(dedupe_key=k, msisdn=m, text="JF", received_at=now)
                     for k, m in (("a", "13800138000"), ("b", "13900139000"),
                                  ("c", "13700137000"))])
        first, second, third = (m.id for m in q.claim_mo(10))
        q.save_rate_windows([RateWindow("13800138000", now, 1, False)])
        replies = [_reply("13900139000", "mo:2", later), _reply("13800138000", "mo:1", later),
                   dict(_reply("13700137000", "mo:3", later), template=None, body="hello",
                        claimed_until=None, state="queued", attempts=0)]
        ids = q.finish_handling([RateWindow("13900139000", later, 1, False),
                                 RateWindow("13800138000", now, 2, True)],
                                replies, [(first, "handled"), (third, "failed")], later)
        assert ids == sorted(ids) and len(set(ids)) == 3  # in the order given
        rows = {r["id"]: r for r in q.outbox_rows()}
        assert [(rows[i]["msisdn"], rows[i]["template"], rows[i]["body"], rows[i]["state"],
                 rows[i]["claimed_until"] is None) for i in ids] == [
            ("13900139000", "balance", None, "sending", False),
            ("13800138000", "balance", None, "sending", False),
            ("13700137000", None, "hello", "queued", True)]
        assert rows[ids[0]]["dedupe_key"] == "mo:2"
        assert q.rate_windows(["13800138000", "13900139000"]) == {
            "13800138000": RateWindow("13800138000", now, 2, True),
            "13900139000": RateWindow("13900139000", later, 1, False)}
        states = q.mo_states([first, second, third])
        assert (states[first], states[third]) == ("handled", "failed")
        assert states[second] not in ("handled", "failed")  # not given: left alone
        # Nothing to write but the MO states (every reply rate-limited away, say).
        assert q.finish_handling([], [], [(second, "handled")], later) == []
        assert q.mo_states([second]) == {second: "handled"}


@given(st.datetimes(timezones=st.sampled_from([UTC, ZoneInfo("Asia/Shanghai")])),
       st.booleans())
def test_stored_instants_are_what_they_were_and_read_back(instant, is_sqlite):
    q = QueriesBase(None, is_sqlite=is_sqlite)
    naive = instant.astimezone(UTC).replace(tzinfo=None)  # the conversion before the memo
    expected = naive.isoformat(" ", "microseconds") if is_sqlite else naive
    assert q._db_time(instant) == expected
    assert q._db_time(instant) == expected  # remembered
    back = py_time(expected)  # (compared in UTC: a local time in a DST gap equals nothing)
    assert back == instant.astimezone(UTC) and back.tzinfo is UTC


def test_local_times_an_hour_apart_at_a_dst_change_are_stored_as_different_instants():
    # 01:30 on 2026-11-01 happens twice in New York; the two compare and hash equal, so a
    # memo keyed by the instant gave the second the first's stored form (an hour off).
    q = QueriesBase(None, is_sqlite=True)
    first = datetime(2026, 11, 1, 1, 30, tzinfo=ZoneInfo("America/New_York"))
    second = first.replace(fold=1)
    assert first == second and hash(first) == hash(second)
    assert q._db_time(first) == "2026-11-01 05:30:00.000000"
    assert q._db_time(second) == "2026-11-01 06:30:00.000000"


@given(st.one_of(st.datetimes().map(str), st.dates().map(str),
                 st.datetimes(timezones=st.just(ZoneInfo("Asia/Shanghai"))).map(str)))
def test_reading_a_stored_text_is_what_it_was(text):
    assert py_time(text) == datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_a_naive_instant_is_still_refused():
    q = QueriesBase(None, is_sqlite=True)
    q._db_time(datetime(2026, 11, 22, 4, 0, tzinfo=UTC))
    with pytest.raises(ValueError, match="naive datetime"):
        q._db_time(datetime(2026, 11, 22, 4, 0))


def test_arrays_go_as_postgresqls_array_text():
    assert array_literal([3, -1, 10**12]) == "{3,-1,1000000000000}"
    assert array_literal([]) == "{}"
    assert array_literal(["JF", "积分", ""]) == '{"JF","积分",""}'
    assert array_literal(['a"b', "c\\d", None, "NULL"]) == '{"a\\"b","c\\\\d",NULL,"NULL"}'
    assert array_literal([True, False, None]) == "{t,f,NULL}"
    assert array_literal([datetime(2026, 12, 6, 12, 0, 1, 5), None, 7]) == (
        '{"2026-12-06 12:00:01.000005",NULL,7}')
    with pytest.raises(ValueError, match="aware"):
        array_literal([datetime(2026, 12, 6, tzinfo=UTC)])
    with pytest.raises(TypeError, match="float"):
        array_literal([1.5])


@pytest.fixture(scope="module")
def pg_conn():
    if not PG_URL:
        pytest.skip("PostgreSQL reads the array text (LOYALTY_TEST_DATABASE_URL)")
    engine = create_engine(PG_URL)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        yield conn.connection.driver_connection  # (one failing example spoils no other)
    engine.dispose()


# Array text's own characters (a list of them), and any character text takes (not NUL).
_TEXTS = st.lists(st.one_of(st.none(), st.just("NULL"), st.text('"\\{}, aN积'), st.text(
    st.characters(codec="utf-8", exclude_characters="\x00"))))


@given(texts=_TEXTS, numbers=st.lists(st.one_of(st.none(), st.integers(-2**63, 2**63 - 1))),
       flags=st.lists(st.one_of(st.none(), st.booleans())),
       instants=st.lists(st.one_of(st.none(), st.datetimes(min_value=datetime(1970, 1, 1)))))
def test_postgresql_reads_back_each_array_as_given(pg_conn, texts, numbers, flags, instants):
    # Whatever a member texts (quotes, backslashes, braces, commas, "NULL", any script)
    # must reach the table as it was sent.
    row = pg_conn.execute("SELECT %s::text[], %s::bigint[], %s::boolean[], %s::timestamp[]",
                          tuple(map(array_literal, (texts, numbers, flags, instants)))
                          ).fetchone()
    assert list(row) == [texts, numbers, flags, instants]
