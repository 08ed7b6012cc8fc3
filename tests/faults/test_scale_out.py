"""Two server processes on one PostgreSQL schema, as operators run them (docs/scaling.md).

Both run ``twistd.tac`` (``twistd -n``) with one configuration file and their own environment:
``LOYALTY_PROCESS_NAME``, ``LOYALTY_SMPP_SYSTEM_ID`` (each its own bind to the one SMSC, which
deals MO out over the binds in turn), and one FastAGI port shared with
``LOYALTY_FASTAGI_REUSE_PORT`` (the second would not start without it). The jobs' schedule is
made due at start, so both processes try every job as they start. Then:

1. MO from many members (the read-only keywords JF, DJ, MX, LB, WL): every MO is handled once
   with one reply of its kind, every MT (replies and expiry warnings) reaches the SMSC exactly
   once; each job ran once, in one process; calls over the shared port are answered; each
   process's log lines and metrics carry its name;
2. the SMSC stops answering process B's submits and A is paused, so B handles a round of MO
   and holds every reply it claims; B is killed with SIGKILL and A resumed: A sends every one
   of them once their lease (``smpp.outbox_lease_s``) has lapsed, not before, and each reaches
   the SMSC exactly once (B's submits were never accepted).

PostgreSQL only (SKIP LOCKED and advisory locks are what share the work); CI sets
``LOYALTY_TEST_DATABASE_URL``.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from core.accounts import credit_points
from core.config_checks import reuse_port_supported
from core.demo import load_demo
from core.domain import Channel, LedgerKind
from core.messaging.records import RateWindow
from core.store import Store
from core.store.tables import expiry_warnings, job_runs, mo_messages, outbox
from harness.simulator import simulate_call
from harness.smsc_simulator import SMSCSimulator
from tests.conftest import PG_URL, drop_database, make_database_url
from tests.faults.conftest import sleep
from tests.faults.test_crash_recovery import ServerProcess, read_all, server_env

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not PG_URL, reason="several processes share work through PostgreSQL: set "
                       "LOYALTY_TEST_DATABASE_URL")]

MEMBERS = 40
WARNED = 12  # of them with points expiring in ten days: one expiry warning each
LEASE_S = 3.0  # smpp.outbox_lease_s of both processes
KEYWORDS = {"JF": "balance", "DJ": "tier", "MX": "history", "LB": "catalogue", "WL": "delivery"}
ACCOUNTS = {"a": ("loyalty", "secret"), "b": ("loyalty-b", "secret-b")}
STARTED = re.compile(r"job (\S+) (\S+): (started|resumed)")


def member(i: int) -> str:
    return f"136{i:08d}"


def prepare(url: str, rules: Any, now: datetime) -> list[str]:
    """Demo data, MEMBERS members with points, the first WARNED also with points expiring."""
    numbers = [member(i) for i in range(MEMBERS)]
    store = Store(url)
    try:
        with store.unit_of_work() as uow:
            load_demo(uow, rules, now)
        with store.unit_of_work() as uow:
            uow.members.upsert_members([
                dict(msisdn=m, name=f"Member {i}", language=("zh", "en")[i % 2],
                     tier_code=rules.tiers[0].code, created_at=now)
                for i, m in enumerate(numbers)])
            uow.commit()
            for m in numbers:
                credit_points(uow, rules, m, 3000, "bill", rules.today(now) - timedelta(days=20),
                              now, reference=f"scale-{m}")
            expiring = now + timedelta(days=10)
            uow.members.add_lots_bulk([dict(
                msisdn=m, amount=500, remaining=500, source="bill",
                earned_on=rules.today(now) - timedelta(days=700), expires_at=expiring,
                reference=None, expired=False, created_at=now) for m in numbers[:WARNED]])
            uow.members.add_ledger_bulk([dict(
                msisdn=m, kind=LedgerKind.CREDIT, amount=500, reason="bill",
                channel=Channel.IMPORT, order_no=None, reference=None, created_at=now)
                for m in numbers[:WARNED]])
    finally:
        store.dispose()
    return numbers


@pytest.fixture
def pg_database(tmp_path):
    url = make_database_url("postgresql", tmp_path)
    store = Store(url)
    store.upgrade()
    store.dispose()
    yield url
    drop_database(url)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_env(url: str, smsc_port: int, agi_port: int, name: str) -> dict[str, str]:
    system_id, password = ACCOUNTS[name]
    env = server_env(url, smsc_port)
    env.update(
        LOYALTY_PROCESS_NAME=f"loyalty-{name}", LOYALTY_SMPP_SYSTEM_ID=system_id,
        LOYALTY_SMPP_PASSWORD=password,
        LOYALTY_FASTAGI_PORT=str(agi_port), LOYALTY_FASTAGI_REUSE_PORT="true",
        LOYALTY_SMPP_OUTBOX_LEASE_S=str(LEASE_S),
        # A submit the SMSC does not answer is held, not given up, until the kill.
        LOYALTY_SMPP_RESPONSE_TIMEOUT_S="120",
        # Every job due now (its time of day has passed), at any hour, with no quiet hours.
        LOYALTY_JOBS_ENABLED="true", LOYALTY_JOBS_EXPIRY_WARNING_AT="00:00",
        LOYALTY_JOBS_EXPIRE_POINTS_AT="00:00", LOYALTY_JOBS_TIER_REVIEW_AT="00:00",
        LOYALTY_JOBS_QUIET_START="00:00", LOYALTY_JOBS_QUIET_END="00:00",
    )
    return env


async def send(sim: SMSCSimulator, msisdn: str, text: str) -> None:
    """Inject until acknowledged with status 0 (as an SMSC retries)."""
    for _ in range(50):
        if await sim.inject_mo(msisdn, text) == 0:
            return
        await sleep(0.1)
    raise AssertionError(f"MO {text!r} never acknowledged")


def open_work(db: dict[str, list]) -> tuple[int, int]:
    """(MO not handled yet, MT not accepted yet) in one reading of the tables."""
    return (sum(r["state"] == "received" for r in db["mo_messages"]),
            sum(r["state"] in ("queued", "sending") for r in db["outbox"]))


async def finished_runs(url: str, timeout: float = 30.0) -> list[dict]:
    """The job runs once none is running: the jobs start with the processes and may still be
    finishing when the MO are drained."""
    deadline = time.monotonic() + timeout
    while True:
        runs = read_all(url, (job_runs,))["job_runs"]
        if runs and "running" not in {r["state"] for r in runs} or \
                time.monotonic() > deadline:
            return runs
        await sleep(0.2)


async def drained(url: str, sim: SMSCSimulator, timeout: float = 30.0) -> dict[str, list]:
    """Wait until no MO waits and the SMSC holds a copy of every outbox row."""
    deadline = reactor.seconds() + timeout
    while True:
        db = read_all(url, (mo_messages, outbox))
        wanted = Counter((r["msisdn"], r["body"]) for r in db["outbox"])
        got = Counter((m.destination, m.text) for m in sim.messages)
        still = open_work(db)
        if still == (0, 0) and not wanted - got:
            return db
        if reactor.seconds() > deadline:
            raise AssertionError(f"not drained in {timeout}s: (MO, MT) open {still}, "
                                 f"{sum((wanted - got).values())} MT missing at the SMSC")
        await sleep(0.2)


def assert_exactly_once(db: dict[str, list], sim: SMSCSimulator) -> None:
    """Every MO handled with one reply of its kind; every MT at the SMSC exactly once."""
    replies = Counter(r["dedupe_key"] for r in db["outbox"])
    template = {r["dedupe_key"]: r["template"] for r in db["outbox"]}
    wrong = [(r["msisdn"], r["text"], r["state"], replies[f"mo:{r['id']}"],
              template.get(f"mo:{r['id']}")) for r in db["mo_messages"]
             if r["state"] != "handled" or replies[f"mo:{r['id']}"] != 1
             or template[f"mo:{r['id']}"] != KEYWORDS[r["text"].upper()]]
    assert not wrong, f"MO not answered exactly once with their kind: {wrong[:5]}"
    assert {r["state"] for r in db["outbox"]} <= {"submitted", "delivered"}
    wanted = Counter((r["msisdn"], r["body"]) for r in db["outbox"])
    got = Counter((m.destination, m.text) for m in sim.messages)
    assert got == wanted, f"MT not exactly once at the SMSC: missing {wanted - got}, " \
                          f"extra {got - wanted}"


@pytest.mark.skipif(not reuse_port_supported(), reason="fastagi.reuse_port needs Linux")
@pytest_twisted.ensureDeferred
async def test_two_processes_share_the_work_and_one_killed_leaves_nothing_undone(
        pg_database, rules, tmp_path, request):
    url = pg_database
    numbers = prepare(url, rules, datetime.now(UTC))
    sim = SMSCSimulator(*ACCOUNTS["a"], accounts=dict([ACCOUNTS["b"]]), spread_mo=True)
    sim.response_delay_s = 0.01
    sim.listen(0)
    agi_port = free_port()
    servers = {}
    for name in ACCOUNTS:
        (tmp_path / name).mkdir()
        servers[name] = ServerProcess(tmp_path / name,
                                      process_env(url, sim.port, agi_port, name))
    try:
        for server in servers.values():
            server.start()  # at once: both try every job as they start
        for server in servers.values():
            assert await server.listening() == agi_port
        await sim.wait_for(lambda: {p.system_id for p in sim.sessions} == {
            "loyalty", "loyalty-b"}, timeout=30)

        # 1. MO from every member, dealt out over the two binds.
        await defer.gatherResults([defer.ensureDeferred(send(sim, m, k))
                                   for k in KEYWORDS for m in numbers], consumeErrors=True)
        db = await drained(url, sim)
        assert len(db["mo_messages"]) == MEMBERS * len(KEYWORDS)
        assert_exactly_once(db, sim)
        # (Which process handles an MO, and so sends its reply, is whichever claims it
        # first: both usually do some, but either may do all; only "once" is promised.)

        ours = set(numbers)  # (the demo members have expiring points too)
        warnings = read_all(url, (expiry_warnings,))["expiry_warnings"]
        assert sorted(w["msisdn"] for w in warnings if w["msisdn"] in ours) == numbers[:WARNED]
        warned = Counter(r["msisdn"] for r in db["outbox"]
                         if r["kind"] == "expiry_warning" and r["msisdn"] in ours)
        assert warned == Counter(numbers[:WARNED])
        runs = await finished_runs(url)
        assert runs and {r["state"] for r in runs} == {"done"}
        starts = Counter((m[0], m[1]) for s in servers.values()
                         for m in STARTED.findall(s.log_text(0)))
        assert starts == Counter((r["job"], r["run_key"]) for r in runs), \
            "a job run started in both processes (or in none)"

        owners = {json.loads(r["summary"])["owner"].split("@")[0] for r in runs}
        assert owners <= {"loyalty-a", "loyalty-b"}, owners  # the runs say who did them
        for name, server in servers.items():
            ops = re.search(r"ops endpoint listening on [\d.]+:(\d+)", server.log_text(0))
            with urllib.request.urlopen(f"http://127.0.0.1:{ops[1]}/metrics", timeout=10) as r:
                assert f'loyalty_process_info{{name="loyalty-{name}"}} 1.0' in r.read().decode()

        for m in numbers[:4]:  # the shared FastAGI port answers (whichever process takes it)
            call = await simulate_call("127.0.0.1", agi_port, callerid=m, keys="2")
            assert "bal_is" in call.render()

        # 2. B's SMSC link stops answering submits, and A is paused (SIGSTOP) so that B
        # handles every MO and holds every reply; then B gets SIGKILL and A goes on.
        sim.hold_submits_from.add("loyalty-b")
        sim.mo_to = "loyalty-b"
        servers["a"].proc.send_signal(signal.SIGSTOP)
        held_before, last_id = len(sim.messages), max(r["id"] for r in db["outbox"])
        await defer.gatherResults([defer.ensureDeferred(send(sim, m, "jf"))
                                   for m in numbers], consumeErrors=True)
        # Wait until every reply is either at the SMSC and recorded, or held by B (claimed,
        # not at the SMSC), the same rows twice in a row (A's own are on their way for a few
        # milliseconds).
        deadline, previous = reactor.seconds() + 20, None
        while True:
            db = read_all(url, (mo_messages, outbox))
            got = Counter((m.destination, m.text) for m in sim.messages[held_before:])
            new = [r for r in db["outbox"] if r["id"] > last_id]
            sending = [r for r in new if r["state"] == "sending"
                       and not got[(r["msisdn"], r["body"])]]
            done = [r for r in new if r["state"] in ("submitted", "delivered")]
            settled = (not any(r["state"] == "received" for r in db["mo_messages"])
                       and len(new) == MEMBERS and len(sending) + len(done) == MEMBERS)
            ids = {r["id"] for r in sending}
            if settled and ids == previous:
                break
            previous = ids if settled else None
            assert reactor.seconds() < deadline, "B's replies never piled up"
            await sleep(0.3)
        assert len(sending) == MEMBERS, f"B held {len(sending)} replies of {MEMBERS}"
        servers["b"].kill()
        killed_at = reactor.seconds()
        servers["a"].proc.send_signal(signal.SIGCONT)
        lapse = {r["id"]: r["claimed_until"].replace(tzinfo=UTC).timestamp()
                 for r in read_all(url, (outbox,))["outbox"] if r["id"] in ids}
        assert len(lapse) == len(sending)

        # A sends each once its claim has lapsed (polling the SMSC for when each arrives).
        held = {(r["msisdn"], r["body"]): r["id"] for r in sending}
        arrived: dict[int, float] = {}
        deadline = killed_at + LEASE_S + 20
        while len(arrived) < len(held) and reactor.seconds() < deadline:
            for m in sim.messages[held_before:]:
                row = held.get((m.destination, m.text))
                if row is not None:
                    arrived.setdefault(row, reactor.seconds())
            await sleep(0.05)
        assert len(arrived) == len(held), f"{len(held) - len(arrived)} held MT never sent"
        early = {i: round(lapse[i] - t, 2) for i, t in arrived.items() if t < lapse[i]}
        assert not early, f"sent before B's claim lapsed (seconds early): {early}"
        db = await drained(url, sim)
        assert_exactly_once(db, sim)

        assert await servers["a"].stop() in (0, -15)
        for name, server in servers.items():
            log = server.log_text(0)
            assert "Traceback" not in log and "Unhandled" not in log, f"{name} logged an error"
            assert f"[loyalty-{name} " in log  # every line names its process
    finally:
        for server in servers.values():
            server.cleanup()
        await sim.stop()
        request.node.add_report_section("call", "scale-out server logs", "\n".join(
            f"=== {name} ===\n{server.report()}" for name, server in servers.items()))


def test_two_batches_saving_the_same_numbers_rate_windows_wait_instead_of_deadlocking(
        pg_database):
    """Two processes' MO batches can hold messages from the same numbers in another order;
    saving their rate windows must not deadlock (PostgreSQL would abort one batch, whose
    messages are then retried one by one with an error logged)."""
    store = Store(pg_database)
    t = datetime.now(UTC)
    one, two = member(1), member(2)
    with store.unit_of_work() as uow:
        uow.messaging.save_rate_windows([RateWindow(one, t, 1, False),
                                         RateWindow(two, t, 1, False)])
    errors: list[BaseException] = []

    def other_process() -> None:
        try:
            with store.unit_of_work() as b:  # as a handled batch saves them
                b.messaging.finish_handling([RateWindow(two, t, 3, False),
                                             RateWindow(one, t, 3, False)], [], [], t)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    try:
        with store.unit_of_work() as a:
            a.messaging.save_rate_windows([RateWindow(one, t, 2, False)])
            thread = threading.Thread(target=other_process)
            thread.start()
            time.sleep(0.5)  # the other batch is waiting for a row this one holds
            a.messaging.save_rate_windows([RateWindow(two, t, 2, False)])
        thread.join(10)
        assert not errors and not thread.is_alive(), errors
        with store.unit_of_work(write=False) as uow:
            assert {w.count for w in uow.messaging.rate_windows([one, two]).values()} == {3}
    finally:
        store.dispose()
