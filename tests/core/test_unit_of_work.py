"""Who owns the transaction: the unit of work commits when the use case returns and rolls back
when it raises; use cases compose on one unit of work; a savepoint undoes only its block."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import pytest_twisted
from sqlalchemy import event
from twisted.internet import reactor

from core.accounts import balance, credit_points, set_language, set_pin, verify_pin
from core.domain import InvalidInput
from core.messaging.records import RateWindow
from ops.dbservice import DatabaseService
from tests.core.helpers import add_member

M = "13800138000"


class Refused(Exception):
    """A failure after the use case wrote something."""


def credit_then_fail(uow, rules, now):
    credit_points(uow, rules, M, 500, "bill", date(2026, 11, 1), now, reference="r-fail")
    raise Refused


def language_of(store) -> str:
    with store.unit_of_work(write=False) as uow:
        return uow.members.get_member(M).language


def test_what_a_use_case_wrote_is_kept_when_it_returns(store, run, now):
    add_member(store, M)
    run(set_language, M, "en", now)
    assert language_of(store) == "en"


def test_nothing_a_use_case_wrote_is_kept_when_it_raises(store, run, now):
    add_member(store, M)
    with pytest.raises(Refused):
        run(credit_then_fail, now)
    assert run(balance, M, now).points == 0


def test_a_read_only_unit_of_work_keeps_nothing(store, rules, now):
    add_member(store, M)
    with store.unit_of_work(write=False) as uow:
        set_language(uow, rules, M, "en", now)
    assert language_of(store) == "zh"


def test_use_cases_called_with_one_unit_of_work_are_committed_together(store, rules, now):
    add_member(store, M)
    with pytest.raises(Refused), store.unit_of_work() as uow:
        set_language(uow, rules, M, "en", now)
        credit_then_fail(uow, rules, now)
    assert language_of(store) == "zh"


def test_a_savepoint_undoes_only_its_block(store, rules, run, now):
    add_member(store, M)
    with store.unit_of_work() as uow:
        set_language(uow, rules, M, "en", now)
        with pytest.raises(InvalidInput), uow.savepoint():
            credit_points(uow, rules, M, 300, "bill", date(2026, 11, 1), now)
            set_language(uow, rules, M, "xx", now)  # refused after the credit was written
        with uow.savepoint():
            credit_points(uow, rules, M, 200, "bill", date(2026, 11, 1), now)
    assert language_of(store) == "en"
    assert run(balance, M, now).points == 200


@pytest_twisted.ensureDeferred
async def test_the_database_service_commits_a_wrong_pin_and_reports_it(store, rules, now):
    add_member(store, M)
    db = DatabaseService(store, rules, reactor)
    db.startService()
    try:
        await db.run(set_pin, M, "2468", now)
        first = await db.run(verify_pin, M, "1111", now)
        second = await db.run(verify_pin, M, "1112", now)
        third = await db.run(verify_pin, M, "2468", now)
        after_reset = await db.run(verify_pin, M, "1113", now)
        fourth = await db.run(verify_pin, M, "1114", now)
        fifth = await db.run(verify_pin, M, "1115", now)
        with pytest.raises(Refused):
            await db.run(credit_then_fail, now)
    finally:
        await db.stopService()
    assert (first.tries_left, second.tries_left) == (2, 1)  # each wrong try was kept
    assert third.accepted and third.member.msisdn == M
    assert (after_reset.tries_left, fourth.tries_left) == (2, 1)  # the right PIN reset the count
    assert fifth.locked_until == now + timedelta(minutes=30)
    with store.unit_of_work(write=False) as uow:
        assert uow.members.get_member(M).pin_locked_until == now + timedelta(minutes=30)
        assert uow.members.balance_summary(M, now)[0] == 0


def _in_transaction_on_server(uow) -> bool:
    from psycopg.pq import TransactionStatus
    return uow.conn.connection.dbapi_connection.info.transaction_status != \
        TransactionStatus.IDLE


def test_a_read_only_unit_reads_without_a_transaction_on_postgresql(store, rules, now):
    """No BEGIN/ROLLBACK round trips around plain reads; a row lock (or a write) opens a
    transaction first, so the lock is held to the end and the write is still not kept."""
    if store.is_sqlite:
        pytest.skip("PostgreSQL (psycopg) only")
    add_member(store, M)
    with store.unit_of_work(write=False) as uow:
        assert balance(uow, rules, M, now).points == 0
        assert not _in_transaction_on_server(uow)
        uow.members.get_member(M, for_update=True)
        assert _in_transaction_on_server(uow)
        set_language(uow, rules, M, "en", now)
    assert language_of(store) == "zh"
    with store.unit_of_work() as uow:  # a write unit still runs in a transaction
        uow.members.get_member(M)
        assert _in_transaction_on_server(uow)


def _counting_driver_sql(uow) -> list[str]:
    """The statements the unit's Connection runs through ``exec_driver_sql`` from now on
    (``QueriesBase._raw``'s slow path), counted on this Connection only."""
    calls: list[str] = []
    conn = uow.conn
    original = conn.exec_driver_sql

    def counted(statement, *args, **kwargs):
        calls.append(statement)
        return original(statement, *args, **kwargs)

    conn.exec_driver_sql = counted
    return calls


def test_driver_sql_runs_on_the_cursor_on_postgresql(store, now):
    """The store's own cursor listener (the hand BEGIN of read-only units) does not send the
    messaging queries' driver SQL through ``exec_driver_sql``; anyone else's listener does,
    and sees every statement."""
    if store.is_sqlite:
        pytest.skip("PostgreSQL (psycopg) only")
    windows = [RateWindow(M, now, 1, False), RateWindow("13900139000", now, 2, True)]
    numbers = [M, "13900139000", "13700137000"]
    with store.unit_of_work() as uow:
        through_connection = _counting_driver_sql(uow)
        uow.messaging.save_rate_windows(windows)
        assert uow.messaging.rate_windows(numbers) == {w.msisdn: w for w in windows}
    assert through_connection == []
    with store.unit_of_work(write=False) as uow:
        through_connection = _counting_driver_sql(uow)
        assert uow.messaging.rate_windows(numbers) == {w.msisdn: w for w in windows}
    assert through_connection == []

    seen: list[str] = []

    def listener(_conn, _cursor, statement, *_args):
        seen.append(statement)

    event.listen(store.engine, "before_cursor_execute", listener)
    try:
        with store.unit_of_work(write=False) as uow:
            through_connection = _counting_driver_sql(uow)
            assert uow.messaging.rate_windows(numbers) == {w.msisdn: w for w in windows}
    finally:
        event.remove(store.engine, "before_cursor_execute", listener)
    assert len(through_connection) == 1 and "sms_rate" in through_connection[0]
    assert through_connection[0] in seen


def test_a_read_only_unit_opens_its_transaction_before_a_driver_sql_write(store, now):
    """On the cursor too, a read-only unit's driver SQL write first opens a transaction by
    hand (its plain reads before it run without one), and the write is not kept."""
    if store.is_sqlite:
        pytest.skip("PostgreSQL (psycopg) only")
    window = RateWindow(M, now, 1, False)
    with store.unit_of_work(write=False) as uow:
        through_connection = _counting_driver_sql(uow)
        assert uow.messaging.rate_windows([M]) == {}
        assert not _in_transaction_on_server(uow)
        uow.messaging.save_rate_windows([window])
        assert _in_transaction_on_server(uow)
        assert uow.messaging.rate_windows([M]) == {M: window}  # in its own transaction
    assert through_connection == []
    with store.unit_of_work(write=False) as uow:
        assert uow.messaging.rate_windows([M]) == {}
