"""SMS channel benchmark: MO-to-MT round trips through the whole server.

    .venv/bin/python -m bench.sms_bench [--members 40000] [--duration 10] [--concurrency 400]
        [--rate 1000] [--keyword JF,jf,...] [--receipts/--no-receipts] [--echo] [--db-stats]
        [--profile FILE] [--json]

Two processes. This one is the SMSC: an SMSCSimulator that injects MO messages (deliver_sm)
and times each until the reply MT (submit_sm) for that subscriber arrives. The server runs in
a child process (``--role server``, started here): the real ``sms_service`` (ESME session, MO
store and handler, outbox sender, receipt matcher) on one SQLite database with the demo data
plus ``--members`` members holding points, exactly as in production except the SMPP limits:
``max_submit_rate`` 20000/s and ``window`` 200 so the contracted rate is not what is measured.
The per-number MO rate limit stays on (10 a minute): each member has at most one message in
flight and there are enough members that none hits it. The same text from one number within
``smpp.mo_dedupe_window_s`` (120 s) would be taken for a redelivery and get no reply, so each
member's messages cycle through ``--keyword``'s comma-separated spellings of the balance
keyword (``bench.common.BALANCE_SPELLINGS``), which at 40,000 members keeps
repeats over 120 s apart up to about 4,000 round trips/s. ``--keyword`` may also name a mix:
``JF,DJ,MX,LB,WL,jf,dj,mx,lb,wl`` is the read-only keywords in turn.

Phases (each after a short warm-up):

1. throughput: ``--concurrency`` round trips kept in flight (a new MO as soon as a reply
   arrives): completed round trips per second;
2. latency: MO offered at a fixed ``--rate`` (open loop): p50/p99/max MO-to-MT latency.

Besides rates and latencies it reports the server process's CPU per round trip (read from
/proc during the throughput phase): on a shared machine the rate depends on what else runs,
the CPU per round trip much less; one over it is what one dedicated core would sustain.

Diagnostics: ``--echo`` replaces the channel by a bare ESME session that answers every MO with
a fixed text at once (no database): the SMPP floor. ``--db-stats`` makes the server print the
wall and CPU time of every database use case. ``--profile FILE`` runs the server under
cProfile (reactor thread only) and writes FILE at exit.

Progress goes to stderr; the result table to stdout (``--json``: a JSON document).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

from bench.common import (
    BALANCE_SPELLINGS,
    BenchMember,
    Results,
    exit_on_sigterm,
    fresh_database,
    latency_ms,
    log,
    log_warnings_to_stderr,
    populate,
    proc_cpu,
)

MSISDN_BASE = 13900000000
BENCH_SMPP = dict(max_submit_rate=20000.0, window=200, mo_rate_limit=10, enquire_link_s=30,
                  response_timeout_s=10.0, reconnect_min_s=0.1, reconnect_max_s=1.0)


def msisdn(i: int) -> str:
    return str(MSISDN_BASE + i)


# --- database -----------------------------------------------------------------------------------


def bench_members(members: int, today: date) -> Iterator[BenchMember]:
    """Members 1..``members``, each with one lot of points earned last month."""
    for i in range(1, members + 1):
        yield BenchMember(msisdn(i), f"Bench {i}", "zh" if i % 4 else "en",
                          ((1000 + i % 5000, "bill", today - timedelta(days=30)),))


def build_database(url: str, members: int) -> None:
    """Demo data plus ``members`` members with one lot of points each (bulk inserts)."""
    populate(url, bench_members(members, date.today()))


# --- the server process -------------------------------------------------------------------------


def run_echo_server(args: argparse.Namespace, config: Any, reactor: Any) -> Any:
    """The SMPP floor: the same ESME session, an application that answers every MO at once
    with a fixed text, no database. What is left of the budget is the channel's own."""
    from twisted.internet import endpoints

    from sms.session import ESMEService
    from sms.session_settings import SessionSettings

    reply = ("【积分查询】您的可用积分为9300分，其中800分将于2026年12月31日到期。"
             "回复LB查看礼品，DH+代码兑换。")
    holder: dict[str, Any] = {}

    def on_deliver(mo: Any) -> int:
        reactor.callLater(0, lambda: holder["esme"].submit(mo.source_addr, reply)
                          .addErrback(lambda f: None))
        return 0

    endpoint = endpoints.HostnameEndpoint(reactor, "127.0.0.1", args.smsc_port)
    esme = ESMEService(SessionSettings.from_config(config.smpp), endpoint, on_deliver, lambda r: 0,
                       clock=reactor)
    holder["esme"] = esme
    return esme


def run_server(args: argparse.Namespace) -> None:
    from twisted.internet import reactor

    from core.config import load_config
    from core.metrics import Metrics
    from core.rules import ProgrammeRules
    from core.store import Store
    from ops.dbservice import DatabaseService
    from sms.server import sms_service

    log_warnings_to_stderr(redirect_stdio=False)
    config = load_config(environ={})
    config = config.replace("database", url=args.db)
    smpp = BENCH_SMPP | dict(window=args.window or BENCH_SMPP["window"],
                             mo_rate_limit=args.mo_rate_limit or BENCH_SMPP["mo_rate_limit"])
    config = config.replace("smpp", host="127.0.0.1", port=args.smsc_port, **smpp)
    store = Store(config.database.url)
    db = DatabaseService(store, ProgrammeRules(config.programme, config.tiers), reactor)
    sms = (run_echo_server(args, config, reactor) if args.echo
           else sms_service(config, db, Metrics(), reactor))
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    if args.tune_gc:
        from ivr.server import tune_gc

        tune_gc()  # as twistd.tac does once the tree is built
    db_stats = instrument(db) if args.db_stats else None
    db_profiler = profile_database_thread(db) if args.profile_db else None
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile(time.thread_time)

    def stop(*_: Any) -> None:
        reactor.callFromThread(reactor.stop)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    db.startService()
    sms.startService()
    reactor.addSystemEventTrigger("before", "shutdown", sms.stopService)
    reactor.addSystemEventTrigger("after", "shutdown", db.stopService)
    if profiler is not None:
        profiler.enable()
    started, cpu0 = time.perf_counter(), time.process_time()
    reactor.run(installSignalHandlers=False)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
    print(f"server: {cpu:.1f}s CPU in {wall:.1f}s ({100 * cpu / wall:.0f}% of one core)",
          file=sys.stderr, flush=True)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    if not args.echo:
        print(f"server: handled {sms.handler.handled} MO, submitted {sms.sender.submitted} MT",
              file=sys.stderr, flush=True)
    if db_profiler is not None:
        db_profiler.dump_stats(args.profile_db)
    if db_stats is not None:
        for name, (calls, wall, cpu) in sorted(db_stats.items(), key=lambda kv: -kv[1][1]):
            print(f"server: db {name:<18} {calls:>6} calls {wall:7.2f}s wall {cpu:7.2f}s cpu "
                  f"{1000 * wall / max(calls, 1):6.2f} ms/call", file=sys.stderr, flush=True)


def profile_database_thread(db: Any) -> Any:
    """cProfile every unit of work on the database thread (``--profile`` sees only the
    reactor's)."""
    import cProfile

    profiler = cProfile.Profile(time.thread_time)  # CPU: SQLite waits for the GIL in execute
    inner = db._in_unit_of_work

    def profiled(use_case, write, args, kwargs):
        profiler.enable()
        try:
            return inner(use_case, write, args, kwargs)
        finally:
            profiler.disable()

    db._in_unit_of_work = profiled
    return profiler


def instrument(db: Any) -> dict[str, list[float]]:
    """Time every unit of work on the database thread, per use case (wall and CPU); the
    steps of the SMS lane's rounds each count as one call of their use case."""
    stats: dict[str, list[float]] = {}
    inner, inner_steps = db._in_unit_of_work, db._steps

    def count(name: str, t: float, c: float) -> None:
        entry = stats.setdefault(name, [0, 0.0, 0.0])
        entry[0] += 1
        entry[1] += time.perf_counter() - t
        entry[2] += time.thread_time() - c

    def timing(use_case: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t, c = time.perf_counter(), time.thread_time()
            try:
                return use_case(*args, **kwargs)
            finally:
                count(use_case.__name__, t, c)
        return timed

    def timed_unit(use_case, write, args, kwargs):
        return inner(timing(use_case), write, args, kwargs)

    def timed_steps(steps, early=0, on_early=None):
        t, c = time.perf_counter(), time.thread_time()
        try:
            return inner_steps([(timing(use_case), args) for use_case, args in steps], early,
                               on_early)
        finally:
            count("(lane round)", t, c)

    db._in_unit_of_work = timed_unit
    db._steps = timed_steps
    return stats


# --- the SMSC process (this one) ----------------------------------------------------------------


def make_smsc(receipts: bool):
    from harness.smsc_simulator import SMSCSimulator

    class BenchSMSC(SMSCSimulator):
        """Times every MO until the first whole MT to the same number arrives."""

        def __init__(self) -> None:
            super().__init__("loyalty", "secret", receipts=receipts)
            self.sent: dict[str, deque[float]] = {}
            self.latencies: list[float] = []
            self.on_reply: Any = None
            self.mo_errors = 0

        def buildProtocol(self, addr: Any):
            proto = super().buildProtocol(addr)
            made = proto.connectionMade

            def connection_made() -> None:  # an SMSC does not wait on Nagle either
                proto.transport.setTcpNoDelay(True)
                made()

            proto.connectionMade = connection_made
            return proto

        def accept(self, fields: dict[str, Any], message_id: str):
            before = len(self.messages)
            rec = super().accept(fields, message_id)
            if len(self.messages) > before:
                self.messages.clear()  # keep memory flat: only the timing matters here
                dest = rec.destination
                queue = self.sent.get(dest)
                if queue:
                    self.latencies.append(time.perf_counter() - queue.popleft())
                    if self.on_reply is not None:
                        self.on_reply(dest)
            self.submits.clear()
            return rec

        def send(self, number: str, text: str) -> None:
            self.sent.setdefault(number, deque()).append(time.perf_counter())
            self.inject_mo(number, text).addCallbacks(self._status, self._lost)

        def _status(self, status: int) -> None:
            if status:
                self.mo_errors += 1

        def _lost(self, failure: Any) -> None:
            self.mo_errors += 1

    return BenchSMSC()


async def measure(reactor: Any, args: argparse.Namespace, sim: Any, results: Results,
                  server_pid: int) -> None:
    from twisted.internet import task

    free = deque(msisdn(i) for i in range(1, args.members + 1))
    random.Random(7).shuffle(free)
    # The same text from the same number within smpp.mo_dedupe_window_s is a redelivery (no
    # reply), so a member's messages cycle through the keyword's spellings.
    spellings = args.keyword.split(",")
    sent_by: dict[str, int] = {}

    def next_mo() -> tuple[str, str]:
        number = free.popleft()
        n = sent_by[number] = sent_by.get(number, -1) + 1
        return number, spellings[n % len(spellings)]

    def sleep(s: float):
        return task.deferLater(reactor, s, lambda: None)

    # -- throughput: closed loop ------------------------------------------------------------
    state = {"done": 0, "counting": False}

    def replied(number: str) -> None:
        free.append(number)
        if state["counting"]:
            state["done"] += 1
        if state["loop"]:
            sim.send(*next_mo())

    state["loop"] = True
    sim.on_reply = replied
    log(f"throughput: {args.concurrency} round trips in flight, {args.duration}s "
        f"(+{args.warmup}s warm-up)")
    for _ in range(args.concurrency):
        sim.send(*next_mo())
    await sleep(args.warmup)
    state["counting"] = True
    sim.latencies.clear()
    t0, cpu0, server0 = time.perf_counter(), time.process_time(), proc_cpu(server_pid)
    await sleep(args.duration)
    elapsed = time.perf_counter() - t0
    done = state["done"]
    server_cpu = proc_cpu(server_pid) - server0
    smsc_cpu = time.process_time() - cpu0
    state["loop"] = False
    closed = list(sim.latencies)
    await sleep(2.0)  # let the in-flight ones finish
    rate = done / elapsed
    per_trip = 1e6 * server_cpu / max(done, 1)
    log(f"  {done} round trips in {elapsed:.1f}s = {rate:,.0f}/s; server process "
        f"{100 * server_cpu / elapsed:.0f}% of a core ({per_trip:.0f} us CPU per round "
        f"trip), SMSC process {100 * smsc_cpu / elapsed:.0f}%; load average "
        f"{os.getloadavg()[0]:.1f}")
    results.add("sms.round_trips_per_s", "sqlite", round(rate), "1/s",
                f"closed loop, {args.concurrency} in flight, "
                + ("balance keyword" if args.keyword == ",".join(BALANCE_SPELLINGS)
                   else f"keywords {args.keyword}"))
    results.add("sms.server_cpu_per_round_trip_us", "sqlite", round(per_trip), "us",
                "server process CPU (both threads) per MO->MT round trip")
    results.add("sms.one_core_capacity_per_s", "sqlite", round(1e6 / per_trip), "1/s",
                "1 / CPU per round trip: the rate one dedicated core would sustain")
    results.add("sms.server_core_use", "sqlite", round(100 * server_cpu / elapsed), "%",
                f"of one core during the phase; load average {os.getloadavg()[0]:.1f}")
    lat = latency_ms(closed)
    results.add("sms.closed_loop.p50_ms", "sqlite", lat["p50"], "ms")
    results.add("sms.closed_loop.p99_ms", "sqlite", lat["p99"], "ms")

    # -- latency: open loop at a fixed rate --------------------------------------------------
    sim.on_reply = lambda number: free.append(number)
    sim.latencies.clear()
    log(f"latency: {args.rate}/s offered for {args.duration}s (+{args.warmup}s warm-up)")
    sent = {"n": 0}
    start = time.perf_counter()

    def tick() -> None:
        due = int((time.perf_counter() - start) * args.rate) - sent["n"]
        for _ in range(max(0, due)):
            if not free:
                break
            sim.send(*next_mo())
            sent["n"] += 1

    loop = task.LoopingCall(tick)
    loop.start(0.002)
    await sleep(args.warmup)
    sim.latencies.clear()
    n0, t0 = sent["n"], time.perf_counter()
    await sleep(args.duration)
    offered = (sent["n"] - n0) / (time.perf_counter() - t0)
    loop.stop()
    measured = list(sim.latencies)
    await sleep(2.0)
    lat = latency_ms(measured)
    log(f"  offered {offered:,.0f}/s, replies {len(measured) / args.duration:,.0f}/s, "
        f"p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms, max {lat['max']:.1f} ms")
    results.add("sms.fixed_rate.offered_per_s", "sqlite", round(offered), "1/s")
    results.add("sms.fixed_rate.replies_per_s", "sqlite", round(len(measured) / args.duration),
                "1/s")
    results.add("sms.fixed_rate.p50_ms", "sqlite", lat["p50"], "ms", f"at {args.rate}/s")
    results.add("sms.fixed_rate.p99_ms", "sqlite", lat["p99"], "ms", f"at {args.rate}/s")
    results.add("sms.fixed_rate.max_ms", "sqlite", lat["max"], "ms", f"at {args.rate}/s")
    if sim.mo_errors:
        results.add("sms.mo_errors", "sqlite", sim.mo_errors, "count",
                    "deliver_sm answered with an error or lost")


def run_bench(args: argparse.Namespace) -> int:
    from twisted.internet import defer, task

    exit_on_sigterm()
    results = Results("sms", params=dict(members=args.members, duration=args.duration,
                                         concurrency=args.concurrency, rate=args.rate,
                                         keyword=args.keyword, receipts=args.receipts,
                                         smpp=BENCH_SMPP))
    with fresh_database("sqlite") as url:
        log(f"building the database: demo data + {args.members:,} members")
        build_database(url, args.members)

        async def main(reactor) -> None:
            sim = make_smsc(args.receipts)
            port = sim.listen(0).getHost().port
            cmd = [sys.executable, "-m", "bench.sms_bench", "--role", "server", "--db", url,
                   "--smsc-port", str(port)]
            if args.profile:
                cmd += ["--profile", args.profile]
            if args.db_stats:
                cmd += ["--db-stats"]
            if args.echo:
                cmd += ["--echo"]
            if args.switch_interval:
                cmd += ["--switch-interval", str(args.switch_interval)]
            server = subprocess.Popen(cmd, env=dict(os.environ, PYTHONPATH=os.getcwd()))
            try:
                await sim.wait_for(lambda: sim.session is not None, timeout=30)
                log("server bound")
                await measure(reactor, args, sim, results, server.pid)
            finally:
                server.send_signal(signal.SIGTERM)
                await task.deferLater(reactor, 0, lambda: None)
                for _ in range(100):
                    if server.poll() is not None:
                        break
                    await task.deferLater(reactor, 0.1, lambda: None)
                else:
                    server.kill()
                await sim.stop()

        try:
            task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
        except SystemExit as exit_:
            if exit_.code:
                return int(exit_.code)
    results.report(args.json)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.sms_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", type=int, default=40000)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    p.add_argument("--concurrency", type=int, default=400,
                   help="round trips in flight in the throughput phase")
    p.add_argument("--rate", type=float, default=1000.0, help="offered MO/s, latency phase")
    p.add_argument("--keyword", default=",".join(BALANCE_SPELLINGS),
                   help="the MO text; comma-separated spellings are used in turn (see above)")
    p.add_argument("--receipts", action=argparse.BooleanOptionalAction, default=True,
                   help="the SMSC sends a delivery receipt for every MT (default on)")
    p.add_argument("--profile", help="run the server under cProfile, stats to this file")
    p.add_argument("--tune-gc", action=argparse.BooleanOptionalAction, default=True,
                   help="the server tunes the collector as twistd.tac does (default on)")
    p.add_argument("--profile-db", help="cProfile the database thread's units of work, stats "
                   "to this file")
    p.add_argument("--echo", action="store_true",
                   help="measure the SMPP floor: the server answers every MO with a fixed "
                        "text at once, no database, no keyword handling")
    p.add_argument("--switch-interval", type=float, default=0.0,
                   help="sys.setswitchinterval for the server (Python's default: 0.005 s)")
    p.add_argument("--db-stats", action="store_true",
                   help="the server prints time spent per database use case")
    p.add_argument("--json", action="store_true")
    p.add_argument("--role", choices=("bench", "server"), default="bench",
                   help=argparse.SUPPRESS)
    p.add_argument("--db", help=argparse.SUPPRESS)
    p.add_argument("--smsc-port", type=int, help=argparse.SUPPRESS)
    # server role, for bench.sms_peer_bench: the ESME's window and the per-number MO limit
    p.add_argument("--window", type=int, help=argparse.SUPPRESS)
    p.add_argument("--mo-rate-limit", type=int, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.role == "server":
        run_server(args)
        return 0
    return run_bench(args)


if __name__ == "__main__":
    sys.exit(main())
