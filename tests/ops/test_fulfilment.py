"""Fulfilment over real HTTP: the worker (``ops/fulfilment.py``) against the provisioning
simulator (``harness/provisioning_sim.py``), on a real database, and once through the composed
server with an SMS redemption end to end."""

from __future__ import annotations

import json
import runpy
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.logger import formatEvent, globalLogPublisher

from core.accounts import balance, check_ledger, credit_points
from core.config import FulfilmentConfig
from core.demo import load_demo
from core.metrics import Metrics
from core.redemption import redeem
from core.store import Store
from harness.provisioning_sim import REFUSAL, ProvisioningSim
from harness.smsc_simulator import SMSCSimulator
from ops.dbservice import DatabaseService
from ops.fulfilment import FulfilmentService

TAC = Path(__file__).resolve().parents[2] / "twistd.tac"
M = "15912345678"  # not a demo member (the demo's own orders are queued too); reads English


def add_member(uow, rules, now) -> None:
    uow.members.upsert_members([dict(msisdn=M, name="Fulfil", language="en",
                                     tier_code="standard", created_at=now)])
    credit_points(uow, rules, M, 5000, "bill", rules.today(now), now, reference="t1")


def sleep(seconds: float) -> defer.Deferred:
    d: defer.Deferred = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


async def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = reactor.seconds() + timeout
    while not predicate():
        assert reactor.seconds() < deadline, "timed out"
        await sleep(0.02)


class Rig:
    """A database with the demo data, the simulator, and a running fulfilment worker."""

    def __init__(self, database_url: str, rules, mode: str, **settings) -> None:
        self.store = Store(database_url)
        self.rules = rules
        now = datetime.now(UTC)
        with self.store.unit_of_work() as uow:
            load_demo(uow, rules, now)
            add_member(uow, rules, now)
        self.sim = ProvisioningSim(mode, delay_s=settings.pop("delay_s", 30.0))
        self.sim.listen(0)
        self.config = FulfilmentConfig(**dict(dict(
            url=self.sim.url(), auth_header="Authorization: Bearer s3cret", timeout_s=2,
            lease_s=5, backoff_base_s=0.1, backoff_cap_s=0.2, max_attempts=3,
            poll_interval_s=0.05), **settings))
        self.metrics = Metrics()
        self.db = DatabaseService(self.store, rules, reactor)
        self.worker = FulfilmentService(self.config, self.db, self.metrics, reactor)

    def run(self, use_case, *args, **kwargs):
        with self.store.unit_of_work() as uow:
            return use_case(uow, self.rules, *args, **kwargs)

    def status(self, order_no: str) -> str:
        with self.store.unit_of_work(write=False) as uow:
            return uow.orders.get_order(order_no).status

    def texts(self, order_no: str) -> list[tuple[str, dict]]:
        """The fulfilment SMS about this order."""
        with self.store.unit_of_work(write=False) as uow:
            rows = [(r["template"], json.loads(r["params"]))
                    for r in uow.messaging.outbox_rows(M) if r["kind"] == "fulfilment"]
        return [(t, p) for t, p in rows if p["order_no"] == order_no]

    def mine(self, order_no: str) -> list:
        """The simulator's requests for this order (the demo data has orders of its own)."""
        return [q for q in self.sim.requests if q.key == order_no]

    def attempts(self, outcome: str) -> float:
        return self.metrics.registry.get_sample_value(
            "loyalty_fulfilment_attempts_total", {"outcome": outcome}) or 0.0

    def start(self) -> None:
        self.db.startService()
        self.worker.startService()

    async def stop(self) -> None:
        await self.worker.stopService()
        await self.db.stopService()
        await self.sim.stop()


@pytest.fixture
def rig(database_url, rules):
    made: list[Rig] = []

    def make(mode: str, **settings) -> Rig:
        made.append(Rig(database_url, rules, mode, **settings))
        return made[-1]

    yield make
    for r in made:
        r.store.dispose()


@pytest_twisted.ensureDeferred
async def test_5xx_then_2xx_is_retried_and_applied_once(rig):
    r = rig("flaky")
    order = r.run(redeem, M, "A02", "sms", "x1", datetime.now(UTC))
    r.start()
    try:
        await wait_until(lambda: r.status(order.order_no) == "fulfilled")
    finally:
        await r.stop()
    assert [q.status for q in r.mine(order.order_no)] == [503, 200]
    first = r.mine(order.order_no)[0]
    assert first.headers["authorization"] == "Bearer s3cret"
    assert first.body["order_no"] == order.order_no and first.body["kind"] == "service"
    assert r.texts(order.order_no) == [("fulfil_done", {
        "order_no": order.order_no, "reward_code": "A02", "reward_name": "1 GB data pack",
        "reward_kind": "service", "reference": r.sim.applied[order.order_no]})]
    assert r.attempts("error") >= 1 and r.attempts("applied") >= 1


@pytest_twisted.ensureDeferred
async def test_4xx_refunds_the_lots_returns_the_stock_and_tells_the_member(rig):
    r = rig("4xx")
    now = datetime.now(UTC)
    before = r.run(balance, M, now).points
    with r.store.unit_of_work(write=False) as uow:
        stock = uow.orders.get_reward("V01").stock
        lots_before = {lot.id: lot.remaining for lot in uow.members.spendable_lots(M, now)}
    order = r.run(redeem, M, "V01", "sms", "x2", now)
    r.start()
    try:
        await wait_until(lambda: r.status(order.order_no) == "failed")
    finally:
        await r.stop()
    assert len(r.mine(order.order_no)) == 1  # refused for good: never asked again
    with r.store.unit_of_work(write=False) as uow:
        assert uow.orders.get_reward("V01").stock == stock
        assert {lot.id: lot.remaining for lot in uow.members.spendable_lots(M, now)} == \
            lots_before
        assert uow.fulfilment.fulfilment_outcome(order.order_no) == \
            (None, f"refused: 422 {REFUSAL}")
    assert r.run(balance, M, now).points == before
    assert [t for t, _ in r.texts(order.order_no)] == ["fulfil_failed"]
    assert r.texts(order.order_no)[0][1]["points_refunded"] == 1500
    assert r.run(check_ledger) == []


@pytest_twisted.ensureDeferred
async def test_a_timeout_is_retried_with_the_same_key_and_applied_once(rig):
    r = rig("slow", delay_s=0.5, timeout_s=0.2, lease_s=1)
    order = r.run(redeem, M, "A01", "sms", "x3", datetime.now(UTC))
    r.start()
    try:
        await wait_until(lambda: r.status(order.order_no) == "fulfilled")
    finally:
        await r.stop()
    # The first POST timed out (the API applied it, late); the retry gets its reference.
    assert len(r.mine(order.order_no)) >= 2 and order.order_no in r.sim.applied
    assert r.attempts("error") >= 1 and r.attempts("applied") >= 1
    assert len(r.texts(order.order_no)) == 1


@pytest_twisted.ensureDeferred
async def test_an_api_that_never_answers_fails_the_order_after_max_attempts(rig):
    r = rig("drop", max_attempts=2)
    order = r.run(redeem, M, "A02", "sms", "x4", datetime.now(UTC))
    r.start()
    try:
        await wait_until(lambda: r.status(order.order_no) == "failed")
    finally:
        await r.stop()
    assert len(r.mine(order.order_no)) == 2
    assert r.texts(order.order_no)[0][1]["reason"] == "not_applied"
    assert r.run(check_ledger) == []


@pytest_twisted.ensureDeferred
async def test_two_server_processes_share_the_queue_and_post_each_order_once(rig, rules):
    r = rig("ok", batch_size=3)
    now = datetime.now(UTC)
    r.run(credit_points, M, 50_000, "bill", rules.today(now), now, reference="t2")
    mine = [r.run(redeem, M, "A02", "sms", f"two{i}", now).order_no for i in range(30)]
    other_store = Store(r.store.url)
    other_db = DatabaseService(other_store, rules, reactor)
    other = FulfilmentService(r.config, other_db, Metrics(), reactor)
    r.start()
    other_db.startService()
    other.startService()
    try:
        await wait_until(lambda: all(r.status(o) == "fulfilled" for o in mine), timeout=30)
    finally:
        await other.stopService()
        await other_db.stopService()
        await r.stop()
    for order_no in mine:
        assert [q.status for q in r.mine(order_no)] == [200], order_no
    # Between them the two workers POSTed every order exactly once.
    theirs = other.metrics.registry.get_sample_value(
        "loyalty_fulfilment_attempts_total", {"outcome": "applied"}) or 0
    assert r.attempts("applied") + theirs == len(r.sim.requests)
    other_store.dispose()


@pytest_twisted.ensureDeferred
async def test_a_data_pack_redeemed_by_sms_is_applied_and_the_member_told(
        database_url, config, rules, now):
    """The composed server: ``DH A02``, the code, the honest reply, one POST, the SMS; the
    credential and the full number never reach the log."""
    lines: list[str] = []

    def capture(event):
        lines.append(formatEvent(event) + repr({k: v for k, v in event.items()
                                               if not k.startswith("log_")}))

    store = Store(database_url)
    with store.unit_of_work() as uow:
        load_demo(uow, rules, now)
        add_member(uow, rules, now)
    smsc = SMSCSimulator("loyalty", "secret")
    smsc.listen(0)
    api = ProvisioningSim("ok")
    api.listen(0)
    cfg = (config.replace("database", url=database_url).replace("fastagi", port=0)
           .replace("ops", port=0).replace("smpp", port=smsc.port, reconnect_min_s=0.05)
           .replace("jobs", enabled=False)
           .replace("fulfilment", url=api.url(), poll_interval_s=0.05,
                    auth_header="Authorization: Bearer s3cret"))
    globalLogPublisher.addObserver(capture)
    top = runpy.run_path(str(TAC), run_name="loyalty_tac")["build_server"](cfg, reactor)
    top.startService()
    try:
        await top.sms.esme.whenBound()

        async def sms(text: str) -> str:
            seen = len(smsc.texts_to(M))
            assert await smsc.inject_mo(M, text) == 0
            await smsc.wait_for(lambda: len(smsc.texts_to(M)) > seen, timeout=10)
            return smsc.texts_to(M)[-1]

        quote = await sms("DH A02")
        code = next(w for w in quote.replace(",", " ").split() if w.isdigit() and len(w) == 6)
        reply = await sms(code)
        assert "It is being applied; you will get an SMS when it is done." in reply, reply
        await smsc.wait_for(lambda: any("has been applied" in t for t in smsc.texts_to(M)),
                            timeout=10)
    finally:
        await top.stopService()
        await smsc.stop()
        await api.stop()
        globalLogPublisher.removeObserver(capture)
    assert any("fulfilled" in line for line in lines)
    assert not [line for line in lines if "s3cret" in line or M in line]
    assert api.requests[-1].headers["authorization"] == "Bearer s3cret"
    with store.unit_of_work(write=False) as uow:
        (order,) = [o for o in uow.orders.member_orders(M, 5) if o.reward_code == "A02"]
        assert order.status == "fulfilled"
    store.dispose()
    (request,) = [q for q in api.requests if q.key == order.order_no]
    body = request.body
    assert body == {"order_no": order.order_no, "msisdn": M, "reward_code": "A02",
                    "kind": "service", "quantity": 1,
                    "requested_at": order.created_at.astimezone(UTC).isoformat()
                    .replace("+00:00", "Z")}
    applied = [t for t in smsc.texts_to(M) if "has been applied" in t]
    assert applied == [f"Loyalty: 1 GB data pack (order {order.order_no}) has been applied to "
                       f"your number, reference {api.applied[order.order_no]}."]
