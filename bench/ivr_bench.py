"""IVR benchmark: many concurrent simulated calls against the hotline over FastAGI.

    .venv/bin/python -m bench.ivr_bench --calls 2000 --concurrency 2000
        [--hold 4] [--ramp 60] [--keys "2T3TH"] [--members 2000] [--backend sqlite|postgresql]
        [--tune-gc] [--switch-interval S] [--json]

The server is a separate process (``--serve``, started by the bench): the real
``ivr.server.fastagi_service`` with the hotline, a ``DatabaseService`` on a throw-away database
with the demo data plus ``--members`` members, metrics and call records. The callers are the
call simulator (``harness.simulator``) in this process.

Each caller holds the line like a person: every prompt it could interrupt and every input
takes ``--hold`` seconds (+-50 %; real prompts and read-outs last 2-6 s), so calls overlap;
calls start evenly over ``--ramp`` seconds. The default keys "2T3TH" are: balance, no SMS
copy, history, no SMS copy, hang up at the menu (29 AGI commands, 3 database round trips).
``--hold 0 --concurrency 200 --ramp 0`` measures raw throughput (calls/s) instead.

Figures (server side): think time per AGI command (reply -> next command, database waits
included: the FastAGI protocol's own measure) p50/p99/max; the flow's database round trips;
peak concurrent calls; memory per call = (RSS at peak concurrency - RSS after a warm-up) /
peak calls; garbage-collector pauses; server CPU. Client side: calls/s, failed calls.
Per-use-case database times go to stderr.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

from bench.common import (
    BenchMember,
    Results,
    exit_on_sigterm,
    fresh_database,
    latency_ms,
    log,
    log_warnings_to_stderr,
    programme_today,
    raise_fd_limit,
    react,
    rss_bytes,
)
from bench.common import populate as common_populate

BASE = 13600000000
TARGET_CALLS, TARGET_P99_MS = 2000, 20.0


def member(i: int) -> str:
    return str(BASE + i)


# --- data ---------------------------------------------------------------------------------


def bench_members(n_members: int, today: date) -> Iterator[BenchMember]:
    """``n_members`` callers with two lots each: one earned last month, one expiring this
    year (so the balance read-out also speaks an expiry)."""
    for i in range(n_members):
        yield BenchMember(member(i), f"Bench {i}", "zh" if i % 2 else "en",
                          ((1000 + i, "bill", today - timedelta(days=30)),
                           (500, "tenure", date(today.year - 2, 3, 1))))


def populate(url: str, n_members: int) -> None:
    """The demo data set plus ``n_members`` members with two lots each (one expiring)."""
    common_populate(url, bench_members(n_members, programme_today()))


# --- the server process -----------------------------------------------------------------


class ThinkTee:
    """Passes observer hooks on and keeps every think time, and RSS at peak concurrency."""

    def __init__(self, inner: Any, factory: Any) -> None:
        self.inner, self.factory = inner, factory
        self.samples: list[float] = []
        self.peak_calls, self.rss_at_peak, self.baseline = 0, 0, rss_bytes()

    def call_started(self, channel: Any) -> None:
        self.inner.call_started(channel)
        self._sample()

    def _sample(self) -> None:
        if self.factory.active_calls > self.peak_calls:
            self.peak_calls, self.rss_at_peak = self.factory.active_calls, rss_bytes()

    def call_ended(self, channel: Any, outcome: str) -> None:
        self._sample()
        self.inner.call_ended(channel, outcome)

    def think_time(self, seconds: float) -> None:
        self.samples.append(seconds)
        self.inner.think_time(seconds)

    def mark(self) -> None:
        """Start measuring: after the warm-up calls."""
        self.samples.clear()
        self.peak_calls, self.rss_at_peak, self.baseline = 0, 0, rss_bytes()


class TimedDB:
    """The database service with each ``run`` timed (queue wait + execution), for the report."""

    def __init__(self, db: Any) -> None:
        self.db, self.rules, self.samples, self.execs = db, db.rules, [], []

    def run(self, use_case: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()

        def timed(uow: Any, rules: Any, *a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return use_case(uow, rules, *a, **kw)
            finally:
                self.execs.append((use_case.__name__, time.perf_counter() - t0))

        d = self.db.run(timed, *args, **kwargs)

        def done(result: Any) -> Any:
            self.samples.append((use_case.__name__, time.perf_counter() - started))
            return result

        return d.addBoth(done)


def serve(url: str, max_calls: int, switch_interval: float | None, tune_gc: bool) -> None:
    """Run the FastAGI server; print ``READY <port>``; obey MARK / STATS / QUIT on stdin."""
    if switch_interval:
        sys.setswitchinterval(switch_interval)
    from twisted.internet import reactor, stdio
    from twisted.protocols.basic import LineReceiver

    from core.config import load_config
    from core.metrics import Metrics
    from core.rules import ProgrammeRules
    from core.store import Store
    from ivr.server import fastagi_endpoint, fastagi_service
    from ops.dbservice import DatabaseService

    log_warnings_to_stderr()
    raise_fd_limit()
    config = load_config(environ={}).replace("fastagi", host="127.0.0.1", port=0,
                                             max_calls=max_calls, idle_timeout_s=120)
    rules = ProgrammeRules(config.programme, config.tiers)
    store = Store(url, pool_size=config.database.pool_size)
    db = DatabaseService(store, rules, reactor)
    metrics = Metrics()
    service = fastagi_service(config, db, metrics, reactor,
                              fastagi_endpoint(reactor, config.fastagi))
    tee = ThinkTee(service.factory.observer, service.factory)
    service.factory.observer = tee
    timed = service.hotline.db = service.recorder.db = TimedDB(db)
    db.startService()
    service.startService()
    if tune_gc:
        from ivr.server import tune_gc as tune

        tune()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.addSystemEventTrigger("before", "shutdown", db.stopService)

    class Control(LineReceiver):
        delimiter = b"\n"

        def connectionMade(self) -> None:
            self.sendLine(f"READY {service.port.getHost().port}".encode())

        def lineReceived(self, line: bytes) -> None:
            command = line.decode().strip()
            if command == "MARK":
                tee.mark()
                gc_pauses.clear()
                timed.samples.clear()
                timed.execs.clear()
                self.cpu = time.process_time()
                self.sendLine(b"OK")
            elif command == "STATS":
                stats = dict(think=tee.samples, db=timed.samples, db_exec=timed.execs,
                             gc=gc_pauses,
                             cpu_s=time.process_time() - getattr(self, "cpu", 0.0),
                             peak_calls=tee.peak_calls,
                             rss_at_peak=tee.rss_at_peak, baseline=tee.baseline,
                             rss_now=rss_bytes(), rejected=service.factory.rejected_calls,
                             threads=store.threads)
                self.sendLine(json.dumps(stats).encode())
            elif command == "QUIT":
                self.transport.loseConnection()

        def connectionLost(self, reason: Any = None) -> None:
            reactor.callLater(0, reactor.stop)

    gc_pauses: list[float] = []
    gc_start: list[float] = [0.0]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            gc_start[0] = time.perf_counter()
        else:
            gc_pauses.append(time.perf_counter() - gc_start[0])

    gc.callbacks.append(on_gc)
    stdio.StandardIO(Control())
    profile_to = os.environ.get("IVR_BENCH_PROFILE")  # a file: cProfile the server into it
    if profile_to:
        import cProfile

        cProfile.runctx("reactor.run()", globals(), {"reactor": reactor}, profile_to)
    else:
        reactor.run()


# --- the callers ------------------------------------------------------------------------


def paced_keys(keys: str, hold: float, reactor: Any) -> Any:
    """A scripted caller who takes ``hold`` seconds (+-50 %) at every prompt and input."""
    from twisted.internet import task

    from harness.simulator import KeySource

    class Paced(KeySource):
        async def ensure(self, hint: str, escape_digits: str = "") -> None:
            if hold > 0 and hint != "more-digits":
                await task.deferLater(reactor, hold * random.uniform(0.5, 1.5), lambda: None)

    return Paced(keys)


def call_failed(call: Any) -> bool:
    """A scripted call failed when it timed out or the server, not the caller, ended it (the
    default keys end with the caller hanging up; a refused call gets LOYALTY_NEXT=busy and
    is ended by the server)."""
    return call.timed_out or call.hung_up_by != "caller"


async def drive(reactor: Any, port: int, args: argparse.Namespace, n: int,
                ramp: float) -> tuple[list[Any], float]:
    """``n`` calls, started evenly over ``ramp`` seconds, at most ``args.concurrency`` at once."""
    from twisted.internet import defer, task

    from harness.simulator import simulate_call

    semaphore = defer.DeferredSemaphore(args.concurrency)
    numbers = [member(i % args.members) for i in range(n)] if args.members else ["13800138000"]

    async def one(i: int) -> Any:
        await task.deferLater(reactor, ramp * i / max(n, 1), lambda: None)
        return await semaphore.run(lambda: defer.ensureDeferred(simulate_call(
            "127.0.0.1", port, callerid=numbers[i % len(numbers)], reactor=reactor,
            key_source=paced_keys(args.keys, args.hold, reactor), timeout_s=600,
            uniqueid=f"bench-{os.getpid()}-{time.time_ns()}-{i}")))

    started = time.perf_counter()
    results = await defer.gatherResults([defer.ensureDeferred(one(i)) for i in range(n)],
                                        consumeErrors=True)
    return results, time.perf_counter() - started


def run_bench(args: argparse.Namespace) -> Results:
    import subprocess

    from twisted.internet import task

    raise_fd_limit()
    results = Results("ivr", params=dict(calls=args.calls, concurrency=args.concurrency,
                                         hold_s=args.hold, ramp_s=args.ramp, keys=args.keys,
                                         members=args.members, backend=args.backend,
                                         switch_interval=args.switch_interval or 0.005,
                                         tune_gc=args.tune_gc))
    with fresh_database(args.backend) as url:
        log(f"populating {args.backend} with the demo data and {args.members} members")
        populate(url, args.members)
        command = [sys.executable, "-m", "bench.ivr_bench", "--serve", url,
                   "--max-calls", str(max(args.concurrency + 100, 3000))]
        if args.switch_interval:
            command += ["--switch-interval", str(args.switch_interval)]
        if args.tune_gc:
            command.append("--tune-gc")
        server = subprocess.Popen(command,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            ready = server.stdout.readline().split()
            if not ready or ready[0] != "READY":
                raise SystemExit("the FastAGI server process did not start")
            port = int(ready[1])

            def ask(command: str) -> str:
                server.stdin.write(command + "\n")
                server.stdin.flush()
                return server.stdout.readline()

            box: dict[str, Any] = {}

            async def main(reactor: Any) -> None:
                log("warm-up: 20 calls")
                warm = argparse.Namespace(**{**vars(args), "hold": 0.0, "concurrency": 20})
                await drive(reactor, port, warm, 20, 0.0)
                await task.deferLater(reactor, 0.5, lambda: None)
                ask("MARK")
                log(f"{args.calls} calls, concurrency {args.concurrency}, hold {args.hold} s, "
                    f"ramp {args.ramp} s, keys {args.keys!r}")
                box["calls"], box["elapsed"] = await drive(reactor, port, args, args.calls,
                                                           args.ramp)
                await task.deferLater(reactor, 1.0, lambda: None)  # call records land

            react(main)
            stats = json.loads(ask("STATS"))
            server.stdin.write("QUIT\n")
            server.stdin.flush()
        finally:
            server.stdin.close()
            server.wait(timeout=30)
    calls, elapsed = box["calls"], box["elapsed"]
    think = latency_ms(stats["think"])
    dbt = latency_ms([t for name, t in stats["db"] if name != "record_call"])
    failed = sum(1 for c in calls if call_failed(c))
    per_call = (stats["rss_at_peak"] - stats["baseline"]) / max(stats["peak_calls"], 1)
    b = args.backend
    results.add("think.p50_ms", b, think["p50"], "ms", f"{len(stats['think'])} AGI commands")
    results.add("think.p99_ms", b, think["p99"], "ms", f"target < {TARGET_P99_MS:g} ms")
    results.add("think.max_ms", b, think["max"], "ms")
    results.add("db.p50_ms", b, dbt["p50"], "ms", "flow use cases, queue included")
    results.add("db.p99_ms", b, dbt["p99"], "ms", f"{stats['threads']} db thread(s)")
    results.add("db.exec_p99_ms", b, latency_ms([t for _, t in stats["db_exec"]])["p99"], "ms",
                "on the db thread, no queue")
    for what, samples in (("exec", stats["db_exec"]), ("round trip", stats["db"])):
        by_case: dict[str, list[float]] = {}
        for name, t in samples:
            by_case.setdefault(name, []).append(t)
        for name, times in sorted(by_case.items()):
            ms = latency_ms(times)
            log(f"  db {what:<10} {name:<14} n={len(times):5d} p50={ms['p50']:.2f} ms "
                f"p99={ms['p99']:.2f} ms max={ms['max']:.1f} ms")
    results.add("gc.max_ms", b, max(stats["gc"], default=0) * 1000, "ms",
                f"{len(stats['gc'])} collections")
    results.add("server.cpu_s", b, stats["cpu_s"], "s", "server process CPU during the run")
    results.add("calls.peak_concurrent", b, stats["peak_calls"], "calls",
                f"target {TARGET_CALLS}")
    results.add("memory.per_call_kib", b, per_call / 1024, "KiB",
                f"RSS {stats['baseline'] / 2**20:.0f} -> {stats['rss_at_peak'] / 2**20:.0f} MiB")
    results.add("calls.per_s", b, len(calls) / elapsed, "calls/s", f"{elapsed:.1f} s wall")
    results.add("calls.failed", b, failed + stats["rejected"], "calls", "timed out / refused")
    return results


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ivr_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=2000)
    parser.add_argument("--hold", type=float, default=4.0,
                        help="seconds a caller spends on each prompt/input (0: no pause)")
    parser.add_argument("--ramp", type=float, default=60.0, help="seconds to start all calls")
    parser.add_argument("--keys", default="2T3TH", help="every caller's keys")
    parser.add_argument("--members", type=int, default=2000, help="distinct callers")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--switch-interval", type=float, default=None, metavar="S",
                        help="the server's sys.setswitchinterval (Python's default: 0.005)")
    parser.add_argument("--tune-gc", action="store_true",
                        help="the server calls ivr.server.tune_gc() once started")
    parser.add_argument("--json", action="store_true", help="JSON on stdout")
    parser.add_argument("--serve", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--max-calls", type=int, default=3000, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        serve(args.serve, args.max_calls, args.switch_interval, args.tune_gc)
        return 0
    exit_on_sigterm()
    results = run_bench(args)
    results.report(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
