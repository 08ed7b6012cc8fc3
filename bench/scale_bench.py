"""Scale-out benchmark: 1, 2 and 4 server processes on one PostgreSQL, read-only SMS keywords.

    .venv/bin/python -m bench.scale_bench [--processes 1,2,4] [--members 20000]
        [--duration 10] [--warmup 3] [--concurrency 200] [--per-process] [--pg-url URL]
        [--db-stats] [--repeat 1] [--json]

For each process count N: a fresh PostgreSQL schema with the demo data plus ``--members``
members (``bench.sms_bench``'s), N server processes (``bench.sms_bench --role server``: the
real SMS channel, each its own bind to the SMSC), and this process as the SMSC
(``bench.sms_bench``'s timing simulator, dealing MO out over the binds in turn, as an SMSC does
over an account's binds). ``--concurrency`` round trips are kept in flight (closed loop) with
the read-only keywords JF, DJ, MX, LB and WL, each member cycling through their spellings (the
same text from one number within ``smpp.mo_dedupe_window_s`` is a redelivery and gets no reply).

Reported per N: round trips/s, MO->MT p50/p99, the servers' CPU per round trip (the sum of the
N processes' CPU over the phase / round trips), PostgreSQL's CPU per round trip (its processes
on this machine, when they are visible in /proc: other users of the server count too), and
both as a ratio to one process. On a machine with fewer free cores than processes the rate
cannot grow; the CPU per round trip says what scale-out costs.

``--per-process``: ``--concurrency`` round trips in flight *per process* (N times as many
for N processes), as when processes are added because the load grew. With the default, the
N processes share the same load, so each has rounds 1/N as large, and the fixed cost of a
round (its statements and commits) is shared by fewer messages: that measures batching as
much as contention, which this mode leaves out.

``--repeat R``: every count R times, the counts in turn (1, 2, 4, 1, 2, 4, ...), so that a
drift of a shared machine hits them alike; each figure is the median of its R runs, each
ratio the median of the runs' own ratios (the CPU per round trip of one run of 1, 2 and 4
processes varied by 10-20 % between runs here, as much as the target's margin).

``--db-stats``: each server prints, as it stops, its database use cases' calls, wall and CPU
time (``bench.sms_bench --db-stats``): the lane's rounds against the MO handled say how large
a round each process had.

Progress goes to stderr; the result table to stdout (``--json``: a JSON document).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections import deque
from typing import Any

from bench.common import (
    DEFAULT_PG_URL,
    Results,
    exit_on_sigterm,
    fresh_database,
    latency_ms,
    log,
    proc_cpu,
    react,
)
from bench.sms_bench import build_database, make_smsc, msisdn

# The five read-only keywords in every spelling the server takes: 15 distinct texts per member.
MIX = ("JF", "DJ", "MX", "LB", "WL", "积分", "等级", "明细", "礼品", "物流",
       "jf", "dj", "mx", "lb", "wl")


def postgres_pids() -> list[int]:
    """PostgreSQL's processes on this machine (empty when the server is elsewhere)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() in ("postgres", "postmaster"):
                        pids.append(int(entry))
            except OSError:
                continue
    return pids


def cpu_of(pids: list[int]) -> float:
    return sum(c for c in (proc_cpu(p) for p in pids) if c == c)  # NaN: the process ended


async def stop_servers(reactor: Any, servers: list[subprocess.Popen]) -> None:
    from twisted.internet import task

    for server in servers:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
    for _ in range(150):
        if all(s.poll() is not None for s in servers):
            return
        await task.deferLater(reactor, 0.1, lambda: None)
    for server in servers:
        if server.poll() is None:
            server.kill()


async def measure(reactor: Any, args: argparse.Namespace, url: str, n: int) -> dict[str, float]:
    """N servers on ``url``, one closed-loop phase; the figures of the run."""
    from twisted.internet import task

    sim = make_smsc(receipts=True)
    sim.spread_mo = True
    port = sim.listen(0).getHost().port
    servers = [subprocess.Popen(
        [sys.executable, "-m", "bench.sms_bench", "--role", "server", "--db", url,
         "--smsc-port", str(port), *(["--db-stats"] if args.db_stats else [])],
        env=dict(os.environ, PYTHONPATH=os.getcwd()))
        for _ in range(n)]
    try:
        await sim.wait_for(lambda: len(sim.sessions) == n, timeout=60)
        log(f"  {n} server(s) bound")
        # What the processes use doing nothing (their polls and timers), before any load.
        pids = [s.pid for s in servers]
        await task.deferLater(reactor, 1.0, lambda: None)
        idle0, t_idle = cpu_of(pids), time.perf_counter()
        await task.deferLater(reactor, args.idle, lambda: None)
        idle = 100 * (cpu_of(pids) - idle0) / (time.perf_counter() - t_idle)
        free = deque(msisdn(i) for i in range(1, args.members + 1))
        random.Random(7).shuffle(free)
        sent_by: dict[str, int] = {}
        state = {"done": 0, "counting": False, "loop": True}

        def send_next() -> None:
            number = free.popleft()
            k = sent_by[number] = sent_by.get(number, -1) + 1
            sim.send(number, MIX[k % len(MIX)])

        def replied(number: str) -> None:
            free.append(number)
            if state["counting"]:
                state["done"] += 1
            if state["loop"]:
                send_next()

        sim.on_reply = replied
        for _ in range(in_flight(args, n)):
            send_next()
        await task.deferLater(reactor, args.warmup, lambda: None)
        pg = postgres_pids()
        state["counting"] = True
        sim.latencies.clear()
        t0, cpu0, pg0 = time.perf_counter(), cpu_of(pids), cpu_of(pg)
        await task.deferLater(reactor, args.duration, lambda: None)
        elapsed = time.perf_counter() - t0
        done = state["done"]
        cpu, pg_cpu = cpu_of(pids) - cpu0, cpu_of(pg) - pg0
        state["loop"] = False
        lat = latency_ms(list(sim.latencies))
        await task.deferLater(reactor, 1.0, lambda: None)
        figures = dict(rate=done / elapsed, cpu_us=1e6 * cpu / max(done, 1),
                       pg_us=1e6 * pg_cpu / max(done, 1) if pg else float("nan"),
                       p50=lat["p50"], p99=lat["p99"], errors=sim.mo_errors,
                       core_use=100 * cpu / elapsed, idle=idle)
        log(f"  {done} round trips in {elapsed:.1f}s = {figures['rate']:,.0f}/s; servers "
            f"{figures['core_use']:.0f}% of a core, {figures['cpu_us']:.0f} us CPU per round "
            f"trip; PostgreSQL {figures['pg_us']:.0f} us per round trip; p50 {lat['p50']:.1f} "
            f"ms, p99 {lat['p99']:.1f} ms; idle {idle:.1f}% of a core; load average "
            f"{os.getloadavg()[0]:.1f}")
        return figures
    finally:
        await stop_servers(reactor, servers)
        await sim.stop()


def in_flight(args: argparse.Namespace, n: int) -> int:
    """Round trips kept in flight for ``n`` processes."""
    return args.concurrency * n if args.per_process else args.concurrency


def _each(values: list[float], spec: str) -> str:
    """A note giving every run's value when there were several."""
    if len(values) < 2:
        return ""
    return f" (median of {len(values)} runs: {' / '.join(format(v, spec) for v in values)})"


def run_bench(args: argparse.Namespace) -> int:
    exit_on_sigterm()
    counts = [int(c) for c in args.processes.split(",") if c]
    results = Results("scale", params=dict(processes=counts, members=args.members,
                                           duration=args.duration, warmup=args.warmup,
                                           concurrency=args.concurrency,
                                           per_process=args.per_process, keywords=MIX[:5]))
    runs: dict[int, list[dict[str, float]]] = {n: [] for n in counts}

    async def main(reactor: Any) -> None:  # one reactor run: it cannot be started twice
        for repetition in range(1, args.repeat + 1):
            for n in counts:  # the counts in turn, so that a drift of the machine hits all
                with fresh_database("postgresql", pg_url=args.pg_url) as url:
                    log(f"== {n} process(es), run {repetition} of {args.repeat}: building "
                        f"the database (demo data + {args.members:,} members)")
                    build_database(url, args.members)  # blocking: nothing else runs yet
                    runs[n].append(await measure(reactor, args, url, n))

    react(main)
    first = counts[0]
    pg = "postgresql"
    for n, each in runs.items():
        # With --repeat: each figure's median, and each ratio's median over the runs (a run's
        # N processes against the same run's first count).
        f = {key: statistics.median(r[key] for r in each) for key in each[0]}
        rates = [r["rate"] / b["rate"] for r, b in zip(each, runs[first], strict=True)]
        cpus = [r["cpu_us"] / b["cpu_us"] for r, b in zip(each, runs[first], strict=True)]
        results.add(f"scale.{n}p.round_trips_per_s", pg, round(f["rate"]), "1/s",
                    f"{n} process(es), {in_flight(args, n)} in flight, JF DJ MX LB WL"
                    + _each([r["rate"] for r in each], ",.0f"))
        results.add(f"scale.{n}p.rate_vs_{first}p", pg, statistics.median(rates), "x",
                    _each(rates, ".2f").strip())
        results.add(f"scale.{n}p.server_cpu_per_round_trip_us", pg, round(f["cpu_us"]), "us",
                    f"sum of the {n} processes' CPU / round trips"
                    + _each([r["cpu_us"] for r in each], ".0f"))
        results.add(f"scale.{n}p.cpu_vs_{first}p", pg, statistics.median(cpus), "x",
                    _each(cpus, ".2f").strip())
        if f["pg_us"] == f["pg_us"]:
            results.add(f"scale.{n}p.postgres_cpu_per_round_trip_us", pg, round(f["pg_us"]),
                        "us", "PostgreSQL's processes on this machine (shared server)")
        results.add(f"scale.{n}p.server_core_use", pg, round(f["core_use"]), "%",
                    "of one core, the processes together, during the phase")
        results.add(f"scale.{n}p.idle_core_use", pg, f["idle"], "%",
                    "of one core, the processes together, before the load (polls, timers)")
        results.add(f"scale.{n}p.p50_ms", pg, f["p50"], "ms")
        results.add(f"scale.{n}p.p99_ms", pg, f["p99"], "ms")
        if f["errors"]:
            results.add(f"scale.{n}p.mo_errors", pg, f["errors"], "count",
                        "deliver_sm answered with an error or lost")
    results.report(args.json)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.scale_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--processes", default="1,2,4", help="comma-separated process counts")
    p.add_argument("--members", type=int, default=20000)
    p.add_argument("--duration", type=float, default=10.0, help="seconds measured per count")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    p.add_argument("--concurrency", type=int, default=200, help="round trips in flight")
    p.add_argument("--per-process", action="store_true",
                   help="--concurrency in flight per process, not shared by the processes")
    p.add_argument("--idle", type=float, default=3.0,
                   help="seconds the idle processes' CPU is measured before the load")
    p.add_argument("--pg-url", default=DEFAULT_PG_URL)
    p.add_argument("--db-stats", action="store_true",
                   help="the servers print their database use cases' times as they stop")
    p.add_argument("--repeat", type=int, default=1,
                   help="run every count this many times, in turn; report the medians")
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return run_bench(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
