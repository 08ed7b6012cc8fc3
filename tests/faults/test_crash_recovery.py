"""kill -9 under mixed load, then a restart on the same database.

The server is ``twistd.tac`` run by ``twistd -n`` in its own OS process (with a short
``smpp.outbox_lease_s``, so that what the killed process had claimed is sent soon after the
restart), so the SIGKILL is real: no stopService, no last writes, half-written transactions
rolled back by the database. This process plays the operator's SMSC (``SMSCSimulator``) and
Asterisk (the call simulator) over TCP, and subscribers: SMS conversations (balance, history,
catalogue, tier, a ``DH <code>`` quote and the one-time code that redeems) and hotline calls
(balance with an SMS copy, tier, redemptions keyed in with the PIN), all at once. Mid-load the
server is killed; a burst of conversations starts in the 40 ms before the kill, so that it
falls on MO between their arrival and their acknowledgement. Subscribers keep texting (the SMSC
redelivers what was not acknowledged, as SMSCs do) and calling; the server is started again and
drains. Then:

1. every MO the SMSC got a ``deliver_sm_resp`` 0 for is stored once, handled once, with
   exactly one reply of the right kind (an MO stored but not acknowledged before the kill is
   redelivered, and acted on once);
2. every MT (replies, SMS copies, the IVR's redemption confirmations) reached the SMSC; the
   only duplicates are of rows that were ``sending`` when the process died (SMPP has no
   idempotency key: a submit_sm accepted just before the kill, whose submit_sm_resp was never
   recorded, is sent again after the restart);
3. every redemption is whole: an order, one debit of its price drawn from lots, its stock, a
   delivery for a gift, and for a voice redemption its SMS confirmation; no lot out of bounds;
   ``loyalty check ledger`` exits 0;
4. calls live at the kill were cut, and only those; a caller told of an order has it; a call
   after the restart hears the balance; neither server process logged an error.

Each assertion message ends with the run in figures (MO acknowledged before the kill, in
flight when the link dropped, MT states at the kill, duplicates at the SMSC...), and a failure
shows both server processes' logs.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from sqlalchemy import select
from twisted.internet import defer, error, reactor

from core.accounts import credit_points, set_pin
from core.demo import DEMO_REWARDS, load_demo
from core.store import Store
from core.store.tables import (
    deliveries,
    ledger,
    lot_draws,
    lots,
    members,
    mo_messages,
    orders,
    outbox,
    rewards,
)
from harness.simulator import KeySource, simulate_call
from harness.smsc_simulator import SMSCSimulator
from tests.faults.conftest import sleep

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
LEASE_S = 2.0  # smpp.outbox_lease_s in the server process (30 s by default)
PIN = "2468"
MEMBERS = 90  # SMS conversations, up to six messages each, started over LOAD_S
BURST = 40  # more conversations, started one a millisecond just before the kill
CALLER_MEMBERS = 30  # members who only call the hotline (as many texters call too)
CALLERS = 8  # concurrent hotline calls
LOAD_S = 3.5  # conversations start over this long
KILL_AFTER_S = 1.4  # the SIGKILL comes this long into the load
DOWN_S = 0.4  # the server stays dead at least this long before the restart
RECOVERY_S = 60.0  # generous bound for everything to come back after the restart
SMSC_DELAY_S = 0.02  # the SMSC answers submit_sm after this long, as real ones take a while

REPLY_TEMPLATES = {  # what the reply to each message must be
    "JF": {"balance"}, "MX": {"history"}, "LB": {"catalogue"}, "DJ": {"tier"},
    "DH": {"redeem_quote", "redeem_failed"}, "code": {"redeem_done", "redeem_failed"},
}
QUOTE = re.compile(r"reply (\d{6}) within|验证码(\d{6})确认")
REFUSED = re.compile(  # the redeem_failed and system_error replies, from their first words
    r"Loyalty: (there is no reward|reward \S+ is (not available|out of stock)|you have reached|"
    r"your \d+ points are not enough|the redemption did not|sorry, the service is busy)|"
    r"【积分兑换】(礼品代码\S+不存在|礼品\S+(当前不可兑换|已兑完)|您已达到|您的积分|兑换未成功)|"
    r"【积分服务】系统繁忙")
# Hotline scripts: balance with an SMS copy, tier, and redemptions (gift G01, voucher V01,
# service A02) keyed in with the PIN; H hangs up at the end.
CALL_SCRIPTS = ("21H", "1H", f"421{PIN}#1H", f"431{PIN}#1H", f"412{PIN}#1H")


def member_number(i: int) -> str:
    return f"135{i:08d}"


def prepare_database(url: str, rules: Any, now: datetime) -> list[str]:
    """Demo data plus the test's members, with 20,000 points and ``PIN`` each."""
    store = Store(url)
    try:
        with store.unit_of_work() as uow:
            load_demo(uow, rules, now)
        numbers = [member_number(i) for i in range(MEMBERS + BURST + CALLER_MEMBERS)]
        with store.unit_of_work() as uow:
            uow.members.upsert_members([
                dict(msisdn=m, name=f"Member {i}", language=("zh", "en")[i % 2],
                     tier_code=rules.tiers[0].code, created_at=now,
                     delivery_address=f"{i} Test Road")  # gifts go by post
                for i, m in enumerate(numbers)])
            uow.commit()
            for m in numbers:
                credit_points(uow, rules, m, 20_000, "bill", rules.today(now) - timedelta(days=30),
                              now, reference=f"crash-{m}")
                set_pin(uow, rules, m, PIN, now)
    finally:
        store.dispose()
    return numbers


# --- the server process ------------------------------------------------------------------------


class ServerProcess:
    """``twistd -n`` running twistd.tac; one log file per start."""

    LISTENING = re.compile(r"FastAGI listening on [\d.]+:(\d+)")

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.tmp_path = tmp_path
        self.env = env
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Path] = []
        self.agi_port: int | None = None

    @property
    def proc(self) -> subprocess.Popen:
        return self.procs[-1]

    def start(self) -> None:
        n = len(self.procs) + 1
        log = self.tmp_path / f"server-{n}.log"
        out = self.tmp_path / f"server-{n}.out"
        self.logs += [log, out]
        cmd = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
               "-n", "--pidfile=", "-y", str(ROOT / "twistd.tac")]
        env = dict(self.env, LOYALTY_LOGGING_FILE=str(log))  # the tac's own log observer
        with open(out, "wb") as sink:  # twistd's own lines, and anything before logging
            self.procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=sink,
                                               stderr=subprocess.STDOUT,
                                               stdin=subprocess.DEVNULL))

    async def listening(self, timeout: float = 30.0) -> int:
        """The FastAGI port, once this start's log says it listens."""
        log = self.logs[-2]
        deadline = reactor.seconds() + timeout
        while reactor.seconds() < deadline:
            assert self.proc.poll() is None, f"server exited with {self.proc.returncode}"
            found = self.LISTENING.search(log.read_text(errors="replace")) \
                if log.exists() else None
            if found:
                self.agi_port = int(found.group(1))
                return self.agi_port
            await sleep(0.05)
        raise AssertionError(f"server not listening within {timeout}s")

    def kill(self) -> None:
        self.agi_port = None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    async def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then wait (on the reactor: the server unbinds from our SMSC) for the
        graceful stop; returns the exit status."""
        self.agi_port = None
        self.proc.send_signal(signal.SIGTERM)
        deadline = reactor.seconds() + timeout
        while self.proc.poll() is None:
            if reactor.seconds() > deadline:
                raise AssertionError(f"server did not stop within {timeout}s of SIGTERM")
            await sleep(0.05)
        return self.proc.returncode

    def cleanup(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)

    def log_text(self, index: int) -> str:
        path = self.logs[index]
        return path.read_text(errors="replace") if path.exists() else ""

    def report(self, lines: int = 250) -> str:
        parts = []
        for path in self.logs:
            text = path.read_text(errors="replace").splitlines() if path.exists() else []
            parts.append(f"--- {path.name} (last {lines} of {len(text)} lines) ---\n"
                         + "\n".join(text[-lines:]))
        return "\n".join(parts)


@pytest.fixture
def server_process(tmp_path):
    procs: list[ServerProcess] = []

    def make(env: dict[str, str]) -> ServerProcess:
        procs.append(ServerProcess(tmp_path, env))
        return procs[-1]

    yield make
    for p in procs:
        p.cleanup()  # never leave a server behind, whatever happened


def server_env(database_url: str, smsc_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
    env.update(
        LOYALTY_CONFIG=str(ROOT / "config" / "loyalty.toml"),
        LOYALTY_DATABASE_URL=database_url,
        LOYALTY_FASTAGI_PORT="0", LOYALTY_OPS_PORT="0",
        LOYALTY_SMPP_PORT=str(smsc_port), LOYALTY_SMPP_RECONNECT_MIN_S="0.05",
        LOYALTY_SMPP_RECONNECT_MAX_S="0.5", LOYALTY_SMPP_MAX_SUBMIT_RATE="300",
        LOYALTY_JOBS_ENABLED="false",
        LOYALTY_SMPP_OUTBOX_LEASE_S=str(LEASE_S),
        PYTHONPATH=str(ROOT),
    )
    return env


# --- the load ------------------------------------------------------------------------------


@dataclass
class SentMO:
    msisdn: str
    text: str
    kind: str  # JF, MX, LB, DH, code, DJ
    attempts: int = 0
    failures: Counter = field(default_factory=Counter)  # why an attempt was not acknowledged
    acked_at: float | None = None


@dataclass
class CallRecord:
    msisdn: str
    keys: str
    started: float
    ended: float
    result: Any = None  # CallResult, or None when the call could not be placed
    error: str = ""

    @property
    def cut(self) -> bool:
        """The line went dead in the middle: closed by the server before the caller's H,
        without the server ending the call (which sets LOYALTY_NEXT for the dialplan)."""
        return self.result is not None and self.result.hung_up_by == "server" and \
            "H" in self.result.remaining_keys and "LOYALTY_NEXT" not in self.result.variables_set


class Paced(KeySource):
    """A caller who takes a moment before each key, so calls are live for a while."""

    def __init__(self, keys: str, rng: random.Random) -> None:
        super().__init__(keys)
        self.rng = rng

    async def ensure(self, hint: str, escape_digits: str = "") -> None:
        if hint != "more-digits":
            await sleep(self.rng.uniform(0.01, 0.05))


class Load:
    def __init__(self, sim: SMSCSimulator, server: ServerProcess, texters: list[str],
                 callers: list[str], rng: random.Random) -> None:
        self.sim = sim
        self.server = server
        self.texters = texters
        self.callers = callers
        self.rng = rng
        self.mos: list[SentMO] = []
        self.calls: list[CallRecord] = []
        self.killed_at: float | None = None
        self.calling = True
        self.halted = False  # the test is over: every subscriber stops
        self.problems: list[str] = []

    def halt(self) -> None:
        self.calling = False
        self.halted = True

    async def send(self, msisdn: str, text: str, kind: str) -> SentMO:
        """Inject until the SMSC gets deliver_sm_resp 0 (an SMSC retries what was not
        acknowledged: a lost link, a dead server, a throttle)."""
        mo = SentMO(msisdn, text, kind)
        self.mos.append(mo)
        deadline = reactor.seconds() + RECOVERY_S
        while reactor.seconds() < deadline and not self.halted:
            if self.sim.session is None:
                mo.failures["no session"] += 1
                await sleep(0.05)
                continue
            mo.attempts += 1
            try:
                status = await self.sim.inject_mo(msisdn, text)
            except defer.FirstError as exc:  # the link dropped under the deliver_sm
                mo.failures[type(exc.subFailure.value).__name__] += 1
                await sleep(0.05)
                continue
            except RuntimeError:  # the session went between the check and the injection
                mo.failures["no session"] += 1
                await sleep(0.05)
                continue
            if status == 0:
                mo.acked_at = reactor.seconds()
                return mo
            mo.failures[f"status 0x{status:x}"] += 1
            await sleep(0.05)
        return mo

    async def wait_quote(self, msisdn: str, timeout: float = RECOVERY_S) -> str | None:
        """The one-time code of the member's DH reply (None: refused, or no reply)."""
        deadline = reactor.seconds() + timeout
        while reactor.seconds() < deadline and not self.halted:
            for text in self.sim.texts_to(msisdn):
                found = QUOTE.search(text)
                if found:
                    return found.group(1) or found.group(2)
                if REFUSED.match(text):
                    return None
            await sleep(0.02)
        if not self.halted:
            self.problems.append(f"no answer to DH from {msisdn} within {timeout}s")
        return None

    async def conversation(self, i: int) -> None:
        msisdn = self.texters[i]
        code = ("A02", "V01", "G02", "A01")[i % 4]
        script = ["JF", "MX"] + (["LB"] if i % 3 == 0 else []) + [f"DH {code}"]
        for text in script:
            await self.send(msisdn, text, text.split()[0])
            await sleep(self.rng.uniform(0.02, 0.25))
        otp = await self.wait_quote(msisdn)
        if otp is not None:
            await sleep(self.rng.uniform(0.02, 0.2))
            await self.send(msisdn, otp, "code")
        await sleep(self.rng.uniform(0.02, 0.2))
        await self.send(msisdn, "DJ", "DJ")

    async def caller(self) -> None:
        while self.calling:
            port = self.server.agi_port
            if port is None:
                await sleep(0.05)
                continue
            msisdn = self.rng.choice(self.callers)
            keys = self.rng.choice(CALL_SCRIPTS)
            started = reactor.seconds()
            try:
                result = await simulate_call("127.0.0.1", port, callerid=msisdn,
                                             key_source=Paced(keys, self.rng), timeout_s=30)
            except (error.ConnectError, error.ConnectionLost) as exc:
                self.calls.append(CallRecord(msisdn, keys, started, reactor.seconds(),
                                             error=type(exc).__name__))
                await sleep(0.05)
                continue
            self.calls.append(CallRecord(msisdn, keys, started, reactor.seconds(), result))

    async def run(self, kill_and_restart) -> None:
        callers = [defer.ensureDeferred(self.caller()) for _ in range(CALLERS)]
        chats = []
        start = reactor.seconds()
        killer = defer.ensureDeferred(kill_and_restart(start))
        # Conversations start evenly over LOAD_S, and BURST of them in the 40 ms before the
        # kill, so that it falls on MO between their arrival and their acknowledgement.
        schedule = sorted([(LOAD_S * i / MEMBERS, i) for i in range(MEMBERS)] + [
            (KILL_AFTER_S - 0.04 + 0.001 * j, MEMBERS + j) for j in range(BURST)])
        for at, i in schedule:
            await sleep(max(0.0, start + at - reactor.seconds()))
            chats.append(defer.ensureDeferred(self.conversation(i)))
        await killer
        await defer.gatherResults(chats, consumeErrors=True)
        self.calling = False
        await defer.gatherResults(callers, consumeErrors=True)


# --- reading the database ------------------------------------------------------------------


def read_all(url: str, tables: tuple = (outbox, mo_messages, orders, ledger, lot_draws, lots,
                                        rewards, deliveries, members)) -> dict[str, list[Any]]:
    store = Store(url)
    try:
        with store.engine.connect() as conn:
            return {t.name: list(conn.execute(select(t)).mappings()) for t in tables}
    finally:
        store.dispose()


def open_work(url: str) -> tuple[int, int]:
    """(MO not yet handled, MT not yet accepted by the SMSC)."""
    store = Store(url)
    try:
        with store.engine.connect() as conn:
            mo = conn.execute(select(mo_messages.c.id).where(
                mo_messages.c.state == "received")).all()
            mt = conn.execute(select(outbox.c.id).where(
                outbox.c.state.in_(("queued", "sending")))).all()
            return len(mo), len(mt)
    finally:
        store.dispose()


def mt_shortfall(rows: list[Any], sim: SMSCSimulator) -> dict[tuple[str, str], tuple[int, int]]:
    """(msisdn, text) -> (outbox rows, messages the SMSC holds) where the SMSC holds fewer."""
    wanted = Counter((r["msisdn"], r["body"]) for r in rows)
    got = Counter((m.destination, m.text) for m in sim.messages)
    return {k: (n, got[k]) for k, n in wanted.items() if got[k] < n}


# --- the test ------------------------------------------------------------------------------


@dataclass
class AtKill:
    """What the killed process left in the database."""

    outbox: dict[int, str] = field(default_factory=dict)  # id -> state
    mo: dict[int, str] = field(default_factory=dict)  # id -> state

    def read(self, url: str) -> None:
        db = read_all(url, (outbox, mo_messages))
        self.outbox = {r["id"]: r["state"] for r in db["outbox"]}
        self.mo = {r["id"]: r["state"] for r in db["mo_messages"]}


@pytest_twisted.ensureDeferred
async def test_kill_9_under_mixed_load_loses_nothing_and_does_nothing_twice(
        database_url, rules, server_process, request):
    now = datetime.now(UTC)  # the server runs on the real clock
    numbers = prepare_database(database_url, rules, now)
    seed = random.randrange(1 << 30)
    sim = SMSCSimulator("loyalty", "secret")
    sim.response_delay_s = SMSC_DELAY_S
    sim.listen(0)
    server = server_process(server_env(database_url, sim.port))
    # Half the callers also text during the run: a hotline redemption and an SMS batch that
    # redeem the same rewards for the same members must not deadlock on PostgreSQL.
    texters = MEMBERS + BURST
    callers = numbers[texters:] + numbers[:CALLER_MEMBERS]
    load = Load(sim, server, numbers[:texters], callers, random.Random(seed))
    at_kill = AtKill()
    try:
        server.start()
        await server.listening()
        await sim.wait_for(lambda: sim.session is not None, timeout=30)

        async def kill_and_restart(start: float) -> None:
            await sleep(KILL_AFTER_S)
            server.kill()
            load.killed_at = reactor.seconds()
            at_kill.read(database_url)
            await sleep(DOWN_S)
            server.start()
            await server.listening()

        await load.run(kill_and_restart)
        await sim.wait_for(lambda: sim.session is not None, timeout=30)

        # Drain: every MO handled, every MT accepted by the SMSC (verify() says what is
        # missing if that does not happen in time).
        deadline = reactor.seconds() + RECOVERY_S
        while reactor.seconds() < deadline:
            if open_work(database_url) == (0, 0) and \
                    not mt_shortfall(read_all(database_url, (outbox,))["outbox"], sim):
                break
            await sleep(0.2)

        # A call after the restart works: the caller hears the balance.
        caller = numbers[-1]
        points = sum(lot["remaining"] for lot in read_all(database_url, (lots,))["points_lots"]
                     if lot["msisdn"] == caller and not lot["expired"])
        after = await simulate_call("127.0.0.1", server.agi_port, callerid=caller, keys="2")
        heard = after.render()
        assert "bal_is" in heard and str(points) in heard.replace(",", ""), heard

        # twistd re-raises the SIGTERM after a clean shutdown: -15 is the normal status.
        assert await server.stop() in (0, -signal.SIGTERM) and \
            "Server Shut Down" in server.log_text(2), "the restarted server did not stop cleanly"
        check = subprocess.run([sys.executable, "-m", "core.cli", "check", "ledger"], cwd=ROOT,
                               env=server.env, capture_output=True, text=True, timeout=60)
        verify(load, sim, read_all(database_url), at_kill, check, server)
    finally:
        load.halt()
        server.cleanup()
        await sim.stop()
        request.node.add_report_section("call", "crash-test server logs",
                                        f"seed {seed}\n" + server.report())


def verify(load: Load, sim: SMSCSimulator, db: dict[str, list[Any]], at_kill: AtKill,
           check: subprocess.CompletedProcess, server: ServerProcess) -> None:
    assert load.killed_at is not None
    summary = describe(load, sim, db, at_kill)

    # The kill happened under load: it left work behind for the restarted process.
    left = [i for i, st in at_kill.outbox.items() if st in ("queued", "sending")] + \
        [i for i, st in at_kill.mo.items() if st == "received"]
    assert left, f"nothing was pending at the kill; the load is too light. {summary}"

    # 1. Every acknowledged MO: stored once, handled, one reply of the right kind.
    not_acked = [(m.msisdn, m.text, dict(m.failures)) for m in load.mos if m.acked_at is None]
    assert not not_acked, f"never acknowledged after the restart: {not_acked[:5]}"
    rows_by_msg = defaultdict(list)
    for r in db["mo_messages"]:
        rows_by_msg[(r["msisdn"], r["text"])].append(r)
    replies = defaultdict(list)
    for r in db["outbox"]:
        if (r["dedupe_key"] or "").startswith("mo:"):
            replies[int(r["dedupe_key"][3:])].append(r)
    sent = {(m.msisdn, m.text): m for m in load.mos}
    assert len(sent) == len(load.mos), "the test sent the same text twice from one number"
    wrong = []
    for key, mo in sent.items():
        when = "before" if mo.acked_at < load.killed_at else "after"
        stored = rows_by_msg.get(key, [])
        # A copy redelivered inside the dedupe window is stored again as a repeat of the
        # first and answered (a request that changes something: with the first answer).
        firsts = [r for r in stored if r["repeat_of"] is None]
        if len(firsts) != 1:
            wrong.append(f"{key} acknowledged {when} the kill: stored {len(firsts)} times")
            continue
        first_answers = replies.get(firsts[0]["id"], [])
        for row in stored:
            answers = replies.get(row["id"], [])
            if row["state"] != "handled" or len(answers) != 1:
                wrong.append(f"{key} acknowledged {when} the kill: state {row['state']}, "
                             f"{len(answers)} replies")
            elif answers[0]["template"] not in REPLY_TEMPLATES[mo.kind]:
                wrong.append(f"{key}: answered with {answers[0]['template']}")
            elif (row["repeat_of"] is not None and mo.kind in ("DH", "code") and first_answers
                  and answers[0]["body"] != first_answers[0]["body"]):
                wrong.append(f"{key}: a repeat answered differently from the first copy")
    assert not wrong, f"{len(wrong)} MO not handled exactly once: {wrong[:8]}. {summary}"
    extra = set(rows_by_msg) - set(sent)
    assert not extra, f"MO rows nobody sent: {sorted(extra)[:5]}"

    # 2. No MT lost; duplicates at the SMSC only of rows in flight at the kill.
    states = Counter(r["state"] for r in db["outbox"])
    assert set(states) <= {"submitted", "delivered"}, f"outbox states {dict(states)}"
    short = mt_shortfall(db["outbox"], sim)
    assert not short, f"MT the SMSC never got (rows, got): {list(short.items())[:5]}. {summary}"
    by_text = defaultdict(list)
    for r in db["outbox"]:
        by_text[(r["msisdn"], r["body"])].append(r["id"])
    got = Counter((m.destination, m.text) for m in sim.messages)
    unexplained = []
    for key, ids in by_text.items():
        extra_copies = got[key] - len(ids)
        in_doubt = sum(1 for i in ids if at_kill.outbox.get(i) == "sending")
        if extra_copies > in_doubt:
            unexplained.append((key, ids, got[key], [at_kill.outbox.get(i) for i in ids]))
    assert not unexplained, (
        f"MT sent more than once though not in flight at the kill (text, rows, copies, state "
        f"at kill): {unexplained[:5]}. {summary}")
    unknown = set(got) - set(by_text)
    assert not unknown, f"the SMSC got texts no outbox row holds: {sorted(unknown)[:3]}"
    assert not load.problems, f"{load.problems[:5]} {summary}"

    # 3. No redemption half applied.
    debits = defaultdict(list)
    for e in db["ledger"]:
        if e["order_no"] is not None:
            debits[e["order_no"]].append(e)
    drawn = Counter()
    for d in db["lot_draws"]:
        drawn[d["ledger_id"]] += d["amount"]
    gifts = {d["order_no"] for d in db["deliveries"]}
    half = []
    for o in db["orders"]:
        entries = [e for e in debits.pop(o["order_no"], []) if e["kind"] == "debit"]
        if len(entries) != 1 or entries[0]["amount"] != -o["points"] \
                or drawn[entries[0]["id"]] != o["points"]:
            half.append((o["order_no"], o["points"], [(e["kind"], e["amount"]) for e in entries]))
        if o["reward_kind"] == "gift" and o["order_no"] not in gifts:
            half.append((o["order_no"], "gift without a delivery"))
    assert not half, f"orders without exactly their debit: {half[:5]}"
    assert not debits, f"order debits without an order: {list(debits)[:5]}"
    declared = {r.code: r.stock for r in DEMO_REWARDS}
    taken = Counter(o["reward_code"] for o in db["orders"] if o["status"] != "cancelled")
    for r in db["rewards"]:
        if declared[r["code"]] is not None:
            assert r["stock"] == declared[r["code"]] - taken[r["code"]] >= 0, (
                f"{r['code']}: stock {r['stock']}, declared {declared[r['code']]}, "
                f"{taken[r['code']]} orders")
    bad_lots = [(x["id"], x["amount"], x["remaining"]) for x in db["points_lots"]
                if not 0 <= x["remaining"] <= x["amount"]]
    assert not bad_lots, f"lots out of bounds: {bad_lots[:5]}"
    assert check.returncode == 0, f"loyalty check ledger: {check.stdout}{check.stderr}"

    # 4. Calls: those live at the kill were cut, no other; what a caller was told is true.
    cut = [c for c in load.calls if c.cut]
    assert cut, f"no call was live at the kill. {summary}"
    late = [(c.msisdn, c.keys, c.started - load.killed_at, c.result.render()[-300:])
            for c in cut if c.started > load.killed_at]
    assert not late, f"calls cut though they started after the kill: {late[:3]}"
    by_call = {c.result.uniqueid: c for c in load.calls if c.result is not None}
    ivr_orders = {o["request_id"].split(":")[0]: o for o in db["orders"]
                  if o["channel"] == "ivr" and o["request_id"].split(":")[0] in by_call}
    told = [c for c in by_call.values() if "redeem_success" in c.result.render()
            or "redeem_accepted" in c.result.render()]  # a gift; a service or voucher
    missing = [c.result.uniqueid for c in told if c.result.uniqueid not in ivr_orders]
    assert not missing, f"callers told of an order that does not exist: {missing[:5]}"
    confirmations = {r["dedupe_key"] for r in db["outbox"]}
    no_sms = [(o["order_no"], "cut" if by_call[u].cut else "not cut",
               by_call[u].result.render()[-400:])
              for u, o in ivr_orders.items() if f"redeem_done:{o['order_no']}" not in confirmations]
    assert not no_sms, f"IVR orders without their SMS confirmation: {no_sms}. {summary}"
    for n in (0, 2):  # server-1.log (until the kill), server-2.log
        log = server.log_text(n)
        assert "Traceback" not in log and "Unhandled" not in log, \
            f"{server.logs[n].name} has an error (see the logs below)"


def describe(load: Load, sim: SMSCSimulator, db: dict[str, list[Any]], at_kill: AtKill) -> str:
    """The run in figures, for assertion messages."""
    killed = load.killed_at or 0.0
    acked_before = sum(1 for m in load.mos if m.acked_at is not None and m.acked_at < killed)
    lost_link = [m for m in load.mos if m.failures.get("ConnectionLost")]
    stored = {(r["msisdn"], r["text"]) for r in db["mo_messages"] if r["id"] in at_kill.mo}
    retried = sum(1 for m in load.mos if m.failures)
    got = Counter((m.destination, m.text) for m in sim.messages)
    rows = Counter((r["msisdn"], r["body"]) for r in db["outbox"])
    dupes = sum(max(0, got[k] - n) for k, n in rows.items())
    calls = Counter("refused" if c.result is None else "cut" if c.cut else "completed"
                    for c in load.calls)
    return (f"[{len(load.mos)} MO: {acked_before} acknowledged before the kill, {retried} "
            f"sent again, {len(lost_link)} in flight when the link dropped (of which "
            f"{sum((m.msisdn, m.text) in stored for m in lost_link)} already stored), MO "
            f"states at the kill {dict(Counter(at_kill.mo.values()))}; {len(db['outbox'])} MT: "
            f"states at the kill {dict(Counter(at_kill.outbox.values()))}, at the end "
            f"{dict(Counter(r['state'] for r in db['outbox']))}, {dupes} duplicated at the "
            f"SMSC; {len(db['orders'])} orders; calls {dict(calls)}]")
