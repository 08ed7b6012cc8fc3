"""Who owns the transaction: the unit of work commits when the use case returns and rolls back
when it raises; use cases compose on one unit of work; a savepoint undoes only its block."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import pytest_twisted
from twisted.internet import reactor

from core.accounts import balance, credit_points, set_language, set_pin, verify_pin
from core.domain import InvalidInput
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
