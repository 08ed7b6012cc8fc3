"""kill -9 while service orders are being applied, then a restart on the same database.

The server is ``twistd.tac`` in its own OS process (as in ``test_crash_recovery.py``) with
``fulfilment.url`` pointing at the provisioning simulator in this process, which answers slowly,
so the kill falls on POSTs in flight: orders ``fulfilling``, applied by the API, their answer
never read. Some orders are refused (4xx) by the API. After the restart (the killed process's
leases lapse) every order ends ``fulfilled`` or ``failed``, each was only ever POSTed under its
own order number as the ``Idempotency-Key``, none is applied twice, none is refunded twice,
each member got one outcome SMS per order, and ``loyalty check ledger`` is clean.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import pytest_twisted
from sqlalchemy import func, select
from twisted.internet import reactor

from core.accounts import credit_points
from core.demo import load_demo
from core.redemption import redeem
from core.store import Store
from core.store.tables import ledger, orders, outbox
from harness.provisioning_sim import ProvisioningSim
from tests.faults.conftest import sleep
from tests.faults.test_crash_recovery import (  # noqa: F401 - server_process: a fixture
    ROOT,
    server_env,
    server_process,
)

pytestmark = pytest.mark.slow

ORDERS = 40
REFUSED_EVERY = 5  # every fifth order is refused by the API
LEASE_S = 2.0
REWARDS = ("A01", "A02", "A03", "V01")


def prepare(url: str, rules, now: datetime) -> list[str]:
    """The demo data, one member per order, and ORDERS service and voucher orders."""
    store = Store(url)
    try:
        with store.unit_of_work() as uow:
            load_demo(uow, rules, now)
            # The demo's own orders are settled already: only this test's are in the queue.
            uow.conn.execute(orders.update().values(fulfil_due_at=None))
        numbers = [f"136{i:08d}" for i in range(ORDERS)]
        with store.unit_of_work() as uow:
            uow.members.upsert_members([dict(msisdn=m, name=f"M{i}", language=("zh", "en")[i % 2],
                                             tier_code="standard", created_at=now)
                                        for i, m in enumerate(numbers)])
            for m in numbers:
                credit_points(uow, rules, m, 5000, "bill", rules.today(now) - timedelta(days=3),
                              now, reference=f"ff-{m}")
        made = []
        with store.unit_of_work() as uow:
            for i, m in enumerate(numbers):
                made.append(redeem(uow, rules, m, REWARDS[i % len(REWARDS)], "sms", f"ff{i}",
                                   now).order_no)
        return made
    finally:
        store.dispose()


def states(url: str) -> Counter:
    store = Store(url)
    try:
        with store.unit_of_work(write=False) as uow:
            return Counter(dict(uow.conn.execute(
                select(orders.c.status, func.count()).where(orders.c.fulfil_due_at.is_not(None))
                .group_by(orders.c.status)).all()))
    finally:
        store.dispose()


@pytest_twisted.ensureDeferred
async def test_kill_9_while_applying_loses_nothing_and_does_nothing_twice(
        database_url, rules, server_process):  # noqa: F811 - the imported fixture
    now = datetime.now(UTC)
    order_nos = prepare(database_url, rules, now)
    refused = set(order_nos[::REFUSED_EVERY])
    api = ProvisioningSim("slow", delay_s=0.4)
    api.key_modes = {o: "4xx" for o in refused}
    api.listen(0)
    env = server_env(database_url, 1)
    env.update(LOYALTY_SMPP_ENABLED="false", LOYALTY_FULFILMENT_URL=api.url(),
               LOYALTY_FULFILMENT_AUTH_HEADER="Authorization: Bearer t0ken",
               LOYALTY_FULFILMENT_TIMEOUT_S="1", LOYALTY_FULFILMENT_LEASE_S=str(LEASE_S),
               LOYALTY_FULFILMENT_BATCH_SIZE="8", LOYALTY_FULFILMENT_POLL_INTERVAL_S="0.05",
               LOYALTY_FULFILMENT_BACKOFF_BASE_S="0.1", LOYALTY_FULFILMENT_BACKOFF_CAP_S="0.2")
    server = server_process(env)
    try:
        server.start()
        await server.listening()
        # Kill once a batch is in flight beyond the first (slow answers keep them open).
        deadline = reactor.seconds() + 30
        while sum(1 for q in api.requests if q.status is None) < 4 or len(api.requests) < 10:
            assert reactor.seconds() < deadline, f"only {len(api.requests)} POSTs"
            await sleep(0.01)
        server.kill()
        at_kill = states(database_url)
        posted_before = len(api.requests)
        assert at_kill["fulfilling"] >= 1, at_kill  # the kill fell on POSTs in flight
        await sleep(0.3)
        server.start()
        await server.listening()
        deadline = reactor.seconds() + 60
        while (s := states(database_url))["confirmed"] + s["fulfilling"]:
            assert reactor.seconds() < deadline, (s, server.report())
            await sleep(0.1)
        await server.stop()
    finally:
        await api.stop()

    final = states(database_url)
    assert final == Counter(fulfilled=ORDERS - len(refused), failed=len(refused)), final
    # Only ever our orders, each under its own order number, and the credential sent.
    assert {q.key for q in api.requests} == set(order_nos)
    assert all(q.body["order_no"] == q.key for q in api.requests)
    assert all(q.headers.get("authorization") == "Bearer t0ken" for q in api.requests)
    assert len(api.requests) > posted_before  # the restart POSTed the killed claims again
    store = Store(database_url)
    try:
        with store.unit_of_work(write=False) as uow:
            for order_no in order_nos:
                status = uow.orders.get_order(order_no).status
                reference, _ = uow.fulfilment.fulfilment_outcome(order_no)
                if order_no in refused:
                    assert status == "failed"
                else:
                    assert (status, reference) == ("fulfilled", api.applied[order_no])
            refunds = Counter(uow.conn.execute(
                select(ledger.c.order_no).where(ledger.c.kind == "refund")).scalars())
            sms = Counter(uow.conn.execute(
                select(outbox.c.template, outbox.c.params).where(outbox.c.kind == "fulfilment")
            ).all())
    finally:
        store.dispose()
    assert refunds == Counter({o: 1 for o in refused})  # refunded once each
    assert sum(sms.values()) == ORDERS and set(sms.values()) == {1}
    assert sorted(api.applied) == sorted(set(order_nos) - refused)  # applied once each
    check = subprocess.run([sys.executable, "-m", "core.cli", "check", "ledger"], cwd=ROOT,
                           env=env, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    restarted = server.log_text(2)
    assert "Traceback" not in restarted and "CRITICAL" not in restarted, server.report()
