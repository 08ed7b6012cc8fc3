"""The MO store and handler as database use cases (no network): dedupe windows, parts joined
from the database, one transaction per batch with savepoints, poison messages, rate windows,
the batched balance read."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import core.messaging.handling as handling
import core.messaging.reading as sms_reading
from core.accounts import balance, credit_points, deduct_points
from core.domain import Channel as Via
from core.domain import LedgerKind
from core.messaging.records import RateWindow
from core.messaging.storing import housekeeping
from sms.encoding import Concat
from sms.handler import HandlerSettings, handle_batch, store_mo_batch
from tests.core.helpers import add_member
from tests.sms.channel_helpers import NOW, mo

ZHANG, ALICE, BOB = "13800138000", "15800158000", "18600186000"


def store_mos(run, mos, now=NOW, window=None):
    return run(store_mo_batch, mos, now) if window is None else run(
        store_mo_batch, mos, now, window)


def handle(run, now=NOW, limit=100, settings=None, claim_until=None):
    return run(handle_batch, settings or HandlerSettings(rate_limit=0), now, limit, claim_until)


def replies(store, msisdn=None):
    with store.unit_of_work(write=False) as uow:
        return [(r["msisdn"], r["template"], r["body"]) for r in uow.messaging.outbox_rows(msisdn)]


def mo_states(store):
    from sqlalchemy import select

    from core.store.tables import mo_messages

    with store.unit_of_work(write=False) as uow:
        return [(r.text, r.state) for r in uow.conn.execute(
            select(mo_messages).order_by(mo_messages.c.id))]


# --- storing -----------------------------------------------------------------------------------


def test_a_redelivery_within_the_window_is_a_duplicate_stored_as_a_repeat(demo, run):
    first = mo(ZHANG, "JF")
    assert store_mos(run, [first, mo(ALICE, "JF"), first]) == [True, True, False]
    assert store_mos(run, [first], NOW + timedelta(seconds=110)) == [False]
    # The same text later is a new message (the subscriber asking again).
    assert store_mos(run, [first], NOW + timedelta(minutes=5)) == [True]
    from sqlalchemy import select

    from core.store.tables import mo_messages

    with demo.unit_of_work(write=False) as uow:
        rows = [(r.id, r.msisdn, r.repeat_of) for r in uow.conn.execute(
            select(mo_messages).order_by(mo_messages.c.id))]
    first_id = rows[0][0]
    # Duplicates are stored again, pointing at the first copy (answered, see the handler).
    assert [(m, r) for _, m, r in rows] == [
        (ZHANG, None), (ALICE, None), (ZHANG, first_id), (ZHANG, first_id), (ZHANG, None)]


def test_the_dedupe_window_is_configurable(demo, run):
    first = mo(ZHANG, "TS 礼品太慢")
    window = 1800.0  # an SMSC known to redeliver up to half an hour late
    assert store_mos(run, [first], window=window) == [True]
    assert store_mos(run, [first], NOW + timedelta(minutes=25), window=window) == [False]
    assert store_mos(run, [first], NOW + timedelta(minutes=65), window=window) == [True]


def test_parts_are_joined_in_memory_or_from_the_database(demo, run):
    text = "BD 上个月的积分没有到账"
    a, b, c = text[:5], text[5:10], text[10:]
    parts = [mo(ZHANG, p, key=f"p{i}", concat=Concat(7, 3, i), complete=False)
             for i, p in enumerate((a, b, c), start=1)]
    # Parts 1 and 2 stored (and acknowledged); then a restart: part 3 comes alone.
    assert store_mos(run, parts[:2]) == [True, True]
    assert mo_states(demo) == []
    assert store_mos(run, [parts[2]]) == [True]
    assert mo_states(demo) == [(text, "received")]
    # A redelivered part, and the whole set again, are duplicates.
    assert store_mos(run, [parts[1]]) == [False]
    complete = mo(ZHANG, c, key="p3", concat=Concat(7, 3, 3), whole=text)
    assert store_mos(run, [complete]) == [False]
    assert mo_states(demo) == [(text, "received")]


def test_a_set_completed_in_memory_is_stored_once(demo, run):
    text = "TS 物流太慢了"
    p1 = mo(ALICE, text[:4], key="q1", concat=Concat(9, 2, 1), complete=False)
    p2 = mo(ALICE, text[4:], key="q2", concat=Concat(9, 2, 2), whole=text)
    assert store_mos(run, [p1, p2]) == [True, True]
    assert mo_states(demo) == [(text, "received")]
    assert store_mos(run, [p2]) == [False]
    assert len(mo_states(demo)) == 1


# --- handling ----------------------------------------------------------------------------------


def test_a_batch_is_handled_in_one_transaction_with_replies(demo, run):
    store_mos(run, [mo(ZHANG, "JF"), mo(ALICE, "DJ"), mo("13612345678", "JF"),
                    mo("abc", "JF")])
    batch = handle(run)
    assert batch.count == 4 and batch.queued == 3 and batch.claimed == ()
    assert batch.outcomes == {"balance": 1, "tier": 1, "not_member": 1, "invalid_source": 1}
    assert [t for _, t, _ in replies(demo)] == ["balance", "tier", "join"]
    assert {s for _, s in mo_states(demo)} == {"handled"}
    assert handle(run).count == 0


def test_replies_can_be_inserted_already_claimed(demo, run):
    store_mos(run, [mo(ZHANG, "JF")])
    until = NOW + timedelta(seconds=30)
    batch = handle(run, claim_until=until)
    (row,) = batch.claimed
    assert row.msisdn == ZHANG and row.body.startswith("【积分查询】") and row.attempts == 1
    with demo.unit_of_work(write=False) as uow:
        (stored,) = uow.messaging.outbox_rows()
    assert stored["state"] == "sending" and stored["claimed_until"] == until


def test_a_domain_error_undoes_only_its_own_message(demo, run, monkeypatch):
    # Out of stock after the quote: the confirmation is rolled back, the others stay.
    store_mos(run, [mo(ZHANG, "DH G01")])
    handle(run)
    quote = next(b for _, t, b in replies(demo) if t == "redeem_quote")
    otp = re.search(r"验证码(\d{6})", quote).group(1)
    from sqlalchemy import update

    from core.store.tables import rewards

    with demo.unit_of_work() as uow:
        uow.conn.execute(update(rewards).where(rewards.c.code == "G01").values(stock=0))
    store_mos(run, [mo(ALICE, "BD points missing"), mo(ZHANG, otp), mo(BOB, "TD")])
    batch = handle(run)
    assert batch.outcomes == {"makeup": 1, "confirm": 1, "stop": 1}
    templates = [t for _, t, _ in replies(demo)][1:]
    assert templates == ["ticket", "redeem_failed", "unsubscribed"]
    with demo.unit_of_work(write=False) as uow:
        assert uow.members.get_member(BOB).warning_opt_out
    assert run(balance, ZHANG, NOW).points == 9300
    # The confirmation was not used up: once restocked, the same code redeems.
    with demo.unit_of_work() as uow:
        uow.conn.execute(update(rewards).where(rewards.c.code == "G01").values(stock=5))
    store_mos(run, [mo(ZHANG, f"QR {otp}")])
    assert handle(run).redemptions == 1
    assert run(balance, ZHANG, NOW).points == 6300


def test_a_wrong_code_counts_even_when_the_batch_goes_on(demo, run):
    store_mos(run, [mo(ZHANG, "DH A02")])
    handle(run)
    store_mos(run, [mo(ZHANG, "000001"), mo(ALICE, "JF"), mo(ZHANG, "000002")])
    batch = handle(run)
    assert batch.count == 3
    bodies = [b for m, t, b in replies(demo) if t == "confirm_failed"]
    assert bodies == [f"【积分兑换】验证码错误或已过期，还可尝试{n}次。请回复DH+代码重新获取。"
                      for n in (2, 1)]
    with demo.unit_of_work(write=False) as uow:
        assert uow.members.member_pin(ZHANG)[1] == 2


def test_a_poison_message_is_retried_then_set_aside_and_the_rest_handled(demo, run,
                                                                         monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(sms_reading, "tier_of", broken)  # the tier of the batched reads
    store_mos(run, [mo(ZHANG, "JF"), mo(ALICE, "DJ"), mo(BOB, "MX")])
    settings = HandlerSettings(rate_limit=0, max_attempts=2, retry_base_s=10)
    batch = handle(run, settings=settings)
    assert batch.count == 3
    assert batch.outcomes == {"balance": 1, "retry": 1, "history": 1}
    assert mo_states(demo) == [("JF", "handled"), ("DJ", "received"), ("MX", "handled")]
    assert [(m, t) for m, t, _ in replies(demo)] == [(ZHANG, "balance"), (BOB, "history")]
    # Not tried again before its backoff ends; then set aside with one reply.
    assert handle(run, NOW + timedelta(seconds=9), settings=settings).count == 0
    batch = handle(run, NOW + timedelta(seconds=10), settings=settings)
    assert batch.outcomes == {"set_aside": 1}
    assert mo_states(demo)[1] == ("DJ", "set_aside")
    assert replies(demo, ALICE)[0][1:] == ("unavailable", (
        "Loyalty: sorry, we cannot answer your request right now. Please try again later."))
    assert handle(run, NOW + timedelta(minutes=5), settings=settings).count == 0


def test_rate_windows():
    windows: dict[str, RateWindow] = {}
    changed: dict[str, RateWindow] = {}
    t = NOW
    verdicts = [handling._rate(windows, changed, "1", t + timedelta(seconds=i), 3)
                for i in range(6)]
    assert verdicts == ["ok", "ok", "ok", "warn", "quiet", "quiet"]
    assert handling._rate(windows, changed, "1", t + timedelta(seconds=60), 3) == "ok"
    assert handling._rate(windows, changed, "2", t, 3) == "ok"
    assert changed["1"] == RateWindow("1", t + timedelta(seconds=60), 1, False)


def test_the_rate_limit_counts_in_the_database_across_batches(demo, run):
    settings = HandlerSettings(rate_limit=2)
    for i, text in enumerate(["JF", "DJ", "MX", "LB"]):
        store_mos(run, [mo(ZHANG, text)], NOW + timedelta(seconds=i))
        handle(run, NOW + timedelta(seconds=i), settings=settings)
    assert [t for _, t, _ in replies(demo)] == ["balance", "tier", "rate_limited"]


def test_the_batched_balance_is_the_core_balance(demo, run, store, rules):
    add_member(store, "13000000001", now=NOW)  # no points at all
    add_member(store, "13000000002", now=NOW)
    run(credit_points, "13000000002", 100, "bill", NOW.date() - timedelta(days=800),
        NOW - timedelta(days=800), channel=Via.IMPORT)  # expired already
    run(credit_points, "13000000002", 50, "bill", NOW.date(), NOW, channel=Via.IMPORT)
    run(deduct_points, "13000000002", 20, LedgerKind.PENALTY, "late", NOW)
    numbers = [ZHANG, ALICE, BOB, "13900139000", "13700137000", "13000000001", "13000000002"]
    for when in (NOW, datetime(2027, 1, 1, tzinfo=UTC)):
        with store.unit_of_work(write=False) as uow:
            batched = uow.messaging.balance_summaries(numbers, when)
        for n in numbers:
            core = run(balance, n, when)
            points, first, expiring = batched[n]
            from core.rules import last_valid_day

            day = last_valid_day(first, rules.zone) if first else None
            assert (points, expiring, day) == (core.points, core.next_expiry_points,
                                               core.next_expiry_date), n


def test_housekeeping_forgets_old_parts_and_rate_windows(demo, run):
    store_mos(run, [mo(ZHANG, "BD a", key="old", concat=Concat(1, 2, 1), complete=False)],
              NOW - timedelta(days=2))
    store_mos(run, [mo(ZHANG, "JF")], NOW - timedelta(days=2))
    handle(run, NOW - timedelta(days=2), settings=HandlerSettings(rate_limit=5))
    store_mos(run, [mo(ALICE, "BD b", key="new", concat=Concat(2, 2, 1), complete=False)])
    assert run(housekeeping, NOW) == (1, 1)
    assert run(housekeeping, NOW) == (0, 0)
