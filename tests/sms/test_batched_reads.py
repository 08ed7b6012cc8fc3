"""The read-only SMS keywords (JF, DJ, MX, LB, WL) answered from a batch's reads say exactly
what the per-member use cases say, for many kinds of member, on both backends, and a batch
costs the same number of queries however many members it holds."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import event

from core.accounts import credit_points, deduct_points
from core.config import CourierConfig
from core.domain import Channel, LedgerKind
from core.messaging import keywords as kw
from core.messaging.handling import HandlerSettings
from core.messaging.reading import BATCHED, batched_answer, read_batch
from core.messaging.replies import answer_alone
from core.redemption import redeem
from core.service_desk import update_delivery
from sms.handler import handle_batch, store_mo_batch
from tests.core.helpers import add_member, add_reward
from tests.sms.channel_helpers import NOW, mo

SOURCES = ("bill", "tenure", "ontime", "partner", "reward", "makeup", "refund")
TIERS = ("standard", "silver", "gold", "diamond")
SETTINGS = HandlerSettings(rate_limit=0, history_entries=4, catalogue_entries=5,
                           delivery_orders=2)
# A reward that has ended, one out of stock, one not yet available, and tier prices.
EXTRA_REWARDS = [
    dict(code="G09", kind="gift", points=700, prices=(("silver", 650), ("gold", 600))),
    dict(code="G08", kind="gift", points=500, stock=0),
    dict(code="V09", kind="voucher", points=400, available=(None, date(2026, 6, 30))),
    dict(code="V08", kind="voucher", points=300, available=(date(2027, 3, 1), None)),
]


def make_members(store, rules, run, count: int, seed: int) -> list[str]:
    """``count`` members of every sort: granted tiers (lasting or lapsed), reviewed tiers
    (valid or lapsed), tiers by points, expired lots, no history, no orders, gift orders
    with and without deliveries, ledger entries at the same instant."""
    rnd = random.Random(seed)
    for spec in EXTRA_REWARDS:
        add_reward(store, **spec)
    numbers = []
    today = rules.today(NOW)
    for i in range(count):
        msisdn = f"139{seed:02d}{i:06d}"
        numbers.append(msisdn)
        add_member(store, msisdn, language=rnd.choice(("zh", "en")),
                   tier=rnd.choice(TIERS), now=NOW - timedelta(days=400))
        fields = {}
        if rnd.random() < 0.5:
            fields["tier_valid_until"] = today + timedelta(days=rnd.randint(-200, 200))
        if rnd.random() < 0.3:
            fields["granted_tier_code"] = rnd.choice(TIERS)
            fields["granted_tier_until"] = today + timedelta(days=rnd.randint(-100, 300))
        if fields:
            with store.unit_of_work() as uow:
                uow.members.update_member(msisdn, **fields)
        if rnd.random() < 0.15:
            continue  # no points, no history, no orders
        for n in range(rnd.randint(1, 6)):
            earned = today - timedelta(days=rnd.randint(0, 1500))  # some long expired
            at = NOW - timedelta(days=rnd.choice((1, 2, 2, 30)))  # same instants repeat
            run(credit_points, msisdn, rnd.choice((100, 700, 2500, 6000, 9000)),
                rnd.choice(SOURCES), earned, at, reference=f"r-{msisdn}-{n}",
                channel=Channel.IMPORT)
        if rnd.random() < 0.3:
            run(deduct_points, msisdn, rnd.randint(1, 900), LedgerKind.PENALTY, "late",
                NOW - timedelta(days=1))
        for n in range(rnd.choice((0, 0, 1, 2, 3))):
            code = rnd.choice(("G01", "G09", "A02", "V01", "G09"))
            try:
                order = run(redeem, msisdn, code, Channel.SMS, f"q-{n}",
                            NOW - timedelta(hours=rnd.choice((1, 5, 5))))
            except Exception:  # not enough points, a limit: that member simply has fewer
                continue
            if order.delivery is not None and rnd.random() < 0.6:
                run(update_delivery, order.order_no, rnd.choice(("shipped", "delivered")),
                    "SF Express", f"SF{rnd.randint(10**9, 10**10)}", NOW - timedelta(hours=1))
    return numbers


INSTANTS = [NOW, NOW + timedelta(days=45), datetime(2028, 1, 2, 3, 0, tzinfo=UTC)]


@pytest.mark.parametrize("seed", [1, 2])
def test_batched_answers_are_the_per_member_answers(demo, store, rules, run, seed):
    numbers = make_members(store, rules, run, 30, seed)
    numbers += ["13800138000", "13900139000", "13700137000", "15800158000", "18600186000"]
    wanted = [(m, k) for m in numbers for k in BATCHED]
    kinds_seen: dict[str, set[str]] = {k: set() for k in BATCHED}
    for when in INSTANTS:
        with store.unit_of_work(write=False) as uow:
            members = uow.messaging.members_by_msisdn(numbers)
            assert set(members) == set(numbers)
            reads = read_batch(uow, rules, members, wanted, when,
                               history_entries=SETTINGS.history_entries,
                               delivery_orders=SETTINGS.delivery_orders)
            for m in numbers:
                lang = members[m].language
                for kind in BATCHED:
                    cmd = kw.Command(kind)
                    batched = batched_answer(reads, rules, cmd, m, lang, when,
                                             SETTINGS.catalogue_entries)
                    alone = answer_alone(uow, rules, cmd, m, lang, when, SETTINGS)
                    assert batched == alone, (m, kind, when)
                    kinds_seen[kind].add(repr(sorted(alone.params.items())))
    # The members really differ: several tiers, empty and full histories and deliveries.
    assert len(kinds_seen[kw.TIER]) >= 6
    assert any("'entries', []" in p for p in kinds_seen[kw.HISTORY])
    assert any("'orders', []" in p for p in kinds_seen[kw.DELIVERY])
    assert any("shipped" in p or "delivered" in p for p in kinds_seen[kw.DELIVERY])


def statements_of_a_batch(store, run, numbers: list[str], texts: list[str]) -> int:
    """How many SQL reads (SELECT) handling one batch of these MO costs."""
    run(store_mo_batch, [mo(m, texts[i % len(texts)], key=f"k{i}")
                         for i, m in enumerate(numbers)], NOW)
    count = 0

    def counted(conn, cursor, statement, *args):
        nonlocal count
        count += statement.lstrip().upper().startswith("SELECT")

    event.listen(store.engine, "before_cursor_execute", counted)
    try:
        batch = run(handle_batch, SETTINGS, NOW, 500, None)
    finally:
        event.remove(store.engine, "before_cursor_execute", counted)
    assert batch.count == len(numbers) and not batch.problems
    return count


def test_a_batch_of_reads_costs_the_same_queries_for_5_or_40_members(demo, store, rules,
                                                                      run):
    numbers = make_members(store, rules, run, 45, 3)
    texts = ["JF", "DJ", "MX", "LB", "WL", "BZ", "hello"]
    few = statements_of_a_batch(store, run, numbers[:7], texts)
    many = statements_of_a_batch(store, run, numbers[7:45], texts)
    assert many == few


def test_the_handler_replies_are_the_per_member_answers(demo, store, rules, run):
    numbers = make_members(store, rules, run, 20, 4)
    texts = {"JF": kw.BALANCE, "dj": kw.TIER, "明细": kw.HISTORY, "LB": kw.CATALOGUE,
             "WL": kw.DELIVERY}
    run(store_mo_batch, [mo(m, t, key=f"{m}{t}") for m in numbers for t in texts], NOW)
    run(handle_batch, SETTINGS, NOW, 500, None)
    with store.unit_of_work(write=False) as uow:
        members = uow.messaging.members_by_msisdn(numbers)
        sent = [(r["msisdn"], r["template"], json.loads(r["params"]))
                for r in uow.messaging.outbox_rows() if r["msisdn"] in members]
        expected = []
        for m in numbers:
            for kind in texts.values():
                reply = answer_alone(uow, rules, kw.Command(kind), m, members[m].language, NOW,
                                     SETTINGS)
                expected.append((m, reply.template, json.loads(json.dumps(reply.params))))
    key = lambda row: (row[0], row[1])  # noqa: E731
    assert sorted(sent, key=key) == sorted(expected, key=key)


def test_a_confirmation_code_is_looked_up_once(demo, store, run):
    run(store_mo_batch, [mo("13800138000", "DH A02")], NOW)
    run(handle_batch, SETTINGS, NOW, 10, None)
    with store.unit_of_work(write=False) as uow:
        quote = [r for r in uow.messaging.outbox_rows("13800138000")
                 if r["template"] == "redeem_quote"][-1]
    otp = json.loads(quote["params"])["otp"]
    run(store_mo_batch, [mo("13800138000", otp)], NOW)
    lookups = []

    def seen(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("SELECT") and "FROM confirmations" in statement:
            lookups.append(statement)

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        batch = run(handle_batch, SETTINGS, NOW, 10, None)
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    assert batch.redemptions == 1
    assert len(lookups) == 1  # the sign-up check and the redemption share one lookup


def test_every_reply_body_is_its_own_fresh_render(demo, store, rules, run):
    # A tier's catalogue is one Message for the batch and each Message is rendered once per
    # round and language: every row's text is still a fresh render of its own params.
    from sms.render import _render_fitting

    numbers = make_members(store, rules, run, 24, 5)
    texts = ["LB", "lb", "JF", "DJ", "MX", "WL", "hello", "BZ"]
    run(store_mo_batch, [mo(m, t, key=f"{m}{t}") for m in numbers for t in texts], NOW)
    batch = run(handle_batch, SETTINGS, NOW, 500, None)
    assert batch.count == len(numbers) * len(texts) and not batch.problems
    with store.unit_of_work(write=False) as uow:
        rows = [r for r in uow.messaging.outbox_rows() if r["msisdn"] in numbers]
    assert len(rows) == len(numbers) * len(texts)
    catalogues = set()
    for r in rows:
        params = json.loads(r["params"])
        assert r["body"] == _render_fitting(r["template"], r["language"], params,
                                            SETTINGS.max_parts), r
        if r["template"] == "catalogue":
            catalogues.add(r["body"])
    assert len(catalogues) > 2  # several tiers and languages, each its own text


def test_a_delivery_reply_names_the_courier_as_configured_in_the_members_language(
        store, rules, run):
    # Deliveries name couriers as the import gave them ("sf express", "EMS", "Yunda"): the
    # member is told the configured courier's name in her language, an unknown one as given.
    couriers = (CourierConfig("SF", "顺丰速运", "SF Express"),
                CourierConfig("EMS", "中国邮政EMS", "China Post EMS"))
    with_couriers = replace(rules, couriers=couriers)
    add_reward(store, "G01", kind="gift", points=100)
    numbers = {"13800138001": "zh", "13800138002": "en"}
    given = ("sf express", "EMS", " Yunda ")
    for m, language in numbers.items():
        add_member(store, m, language=language)
        run(credit_points, m, 1000, "bill", NOW.date(), NOW, reference=f"r-{m}",
            channel=Channel.IMPORT)
        for n, courier in enumerate(given):
            order = run(redeem, m, "G01", Channel.SMS, f"q-{m}-{n}", NOW - timedelta(hours=n))
            run(update_delivery, order.order_no, "shipped", courier, f"T{n}", NOW)
    settings = replace(SETTINGS, delivery_orders=3)
    run(store_mo_batch, [mo(m, "WL", key=f"{m}WL") for m in numbers], NOW)
    with store.unit_of_work() as uow:
        handle_batch(uow, with_couriers, settings, NOW, 500, None)
    with store.unit_of_work(write=False) as uow:
        bodies = {r["msisdn"]: r["body"] for r in uow.messaging.outbox_rows()}
        alone = {m: answer_alone(uow, with_couriers, kw.Command(kw.DELIVERY), m, language, NOW,
                                 settings) for m, language in numbers.items()}
    told = {m: [o["courier"] for o in alone[m].params["orders"]] for m in numbers}
    assert told == {"13800138001": ["顺丰速运", "中国邮政EMS", "Yunda"],
                    "13800138002": ["SF Express", "China Post EMS", "Yunda"]}
    for m, names in told.items():
        assert all(name in bodies[m] for name in names), bodies[m]
    assert "sf express" not in bodies["13800138001"]
