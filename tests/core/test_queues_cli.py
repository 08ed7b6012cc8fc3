"""``loyalty queues``: list what was set aside, put it back, or give it up."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from core.cli import main as loyalty
from core.demo import load_demo
from core.store.tables import mo_messages, outbox
from sms.esme_types import MOMessage
from sms.handler import store_mo_batch

NOW = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)
ZHANG, ALICE = "13800138000", "15800158000"


@pytest.fixture
def aside(monkeypatch, database_url, store, rules):
    """One MO, one MT and one job item set aside; returns their item names."""
    monkeypatch.setenv("LOYALTY_DATABASE_URL", database_url)
    with store.unit_of_work() as uow:
        load_demo(uow, rules, NOW)
        store_mo_batch(uow, rules, [MOMessage(ZHANG, "10086", "JF", True, None, "JF", 0, 0,
                                              "k1")], NOW)
        mo_id = uow.messaging.claim_mo(1)[0].id
        uow.messaging.mo_set_aside(mo_id, 4, "OperationalError: integer overflow", NOW)
        mt_id = uow.outbox.queue_message(msisdn=ALICE, language="en", kind="test", now=NOW,
                                         body="hi")
        uow.messaging.record_set_aside([(mt_id, "queue full (0x00000014)")], NOW)
        uow.jobs.job_set_item_aside("expiry-warnings", "2026-11-22", ZHANG, "RuntimeError: x", NOW)
        uow.commit()
        job_id = uow.set_aside_items()[-1].item
    return f"mo:{mo_id}", f"mt:{mt_id}", job_id


def listed(capsys) -> list[dict]:
    capsys.readouterr()
    assert loyalty(["queues", "list", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_list_retry_and_discard(aside, store, capsys):
    mo, mt, job = aside
    items = listed(capsys)
    assert [(i["item"], i["msisdn"], i["attempts"]) for i in items] == [
        (mo, ZHANG, 4), (mt, ALICE, 0), (job, ZHANG, 1)]
    assert items[0]["error"] == "OperationalError: integer overflow"
    assert loyalty(["queues", "list"]) == 0
    text = capsys.readouterr().out
    assert "138****8000" in text and ZHANG not in text and "3 set aside" in text

    assert loyalty(["queues", "retry", mo]) == 0
    assert loyalty(["queues", "discard", mt]) == 0
    assert loyalty(["queues", "retry", job]) == 0
    assert "loyalty jobs run expiry-warnings --force" in capsys.readouterr().out
    assert listed(capsys) == []
    with store.unit_of_work(write=False) as uow:
        row = uow.conn.execute(select(mo_messages)).one()
        assert (row.state, row.attempts, row.next_attempt_at) == ("received", 0, None)
        assert uow.conn.execute(select(outbox.c.state)).scalar_one() == "discarded"

    assert loyalty(["queues", "retry", mo]) == 1  # not set aside any more
    assert loyalty(["queues", "discard", "nonsense"]) == 2


def test_outbox_backlog_counts_what_waits_and_how_long_the_oldest_has(store, rules):
    from datetime import timedelta

    from core.queues import outbox_backlog

    with store.unit_of_work() as uow:
        empty = outbox_backlog(uow, rules, NOW)
        assert (empty.depth, empty.oldest_at, empty.oldest_age_s) == (0, None, None)
        uow.outbox.queue_message(msisdn=ALICE, language="en", kind="test",
                                         now=NOW - timedelta(minutes=5), body="old")
        uow.outbox.queue_message(msisdn=ZHANG, language="zh", kind="test", now=NOW, body="new")
        gone = uow.outbox.queue_message(msisdn=ZHANG, language="zh", kind="test",
                                        now=NOW - timedelta(hours=1), body="set aside")
        uow.messaging.record_set_aside([(gone, "queue full")], NOW)  # no longer waiting
    with store.unit_of_work() as uow:
        backlog = outbox_backlog(uow, rules, NOW)
    assert backlog.depth == 2
    assert backlog.oldest_at == NOW - timedelta(minutes=5)
    assert backlog.oldest_age_s == 300
