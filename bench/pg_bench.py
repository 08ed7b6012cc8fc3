"""PostgreSQL: redemptions next to pgbench on the same server in the same run, balance p99.

    .venv/bin/python -m bench.pg_bench [--members 100000] [--lots 1000000] [--workers 8]
        [--duration 10] [--scale 8] [--quick] [--pg-url URL] [--json]

One private schema (``bench.common.fresh_database``), bulk-built by ``bench.core_bench.build``
(INSERT ... SELECT over generate_series on the server: members, lots over three years, a
credit ledger entry per lot; then VACUUM ANALYZE). Then:

1. balance query p50/p99 over random members (``core_bench.bench_balance``);
2. redemptions/s with ``--workers`` threads, then as many processes, each on its own members
   (``core_bench.run_threads`` / ``run_processes``: one reward, unlimited stock);
3. the same threads all on 50 members who can each afford two of a 2,000-point reward: most
   attempts must be refused (InsufficientPoints), none may overspend;
4. zero overspend: no member's ledger below zero, no lot below zero, the points debited equal
   the points of the orders, and the contended run made exactly as many orders as it counted
   successes; then ``loyalty check ledger`` on the schema must say "ledger consistent";
5. ``pgbench`` TPC-B (scale ``--scale``, ``--workers`` clients, ``--duration`` s) in a
   database ``pgbench_bench`` created and dropped here, on the same server: the tps, and the
   ratio of redemptions/s to it (a redemption is several TPC-B transactions' worth of work).

Exit status 1 when an overspend or ledger check fails.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from bench.common import (
    DEFAULT_PG_URL,
    Results,
    exit_on_sigterm,
    fresh_database,
    latency_ms,
    log,
    pg_server_version,
    stopwatch,
)
from bench.core_bench import (
    CONTENDED_MEMBERS,
    PRICE,
    add_reward,
    bench_balance,
    build,
    check_built,
    load_rules,
    msisdn,
    redeem_loop,
    run_processes,
    run_threads,
)
from core.domain import Reward
from core.store import Store

ROOT = Path(__file__).resolve().parent.parent
DEAR = 2000          # the contended reward's price: a bench member holds about 5,000 points
PGBENCH_DB = "pgbench_bench"


def redemption_runs(url: str, rules, args: argparse.Namespace, results: Results
                    ) -> dict[str, float]:
    """Threads and processes on distinct members, then threads on 50 members; returns the
    rates and the contended run's successes."""
    add_reward(url, "S00")
    store = Store(url)
    try:
        with store.unit_of_work() as uow:
            uow.orders.upsert_reward(Reward("HOT", "高价礼品", "Dear gift", "service", DEAR,
                                            None, None, None, None, 2))
            uow.commit()
    finally:
        store.dispose()
    order = [msisdn(i) for i in range(1, args.members + 1)]
    random.Random(args.seed).shuffle(order)
    hot, rest = order[:CONTENDED_MEMBERS], order[CONTENDED_MEMBERS:]
    half = len(rest) // 2  # threads and processes never share a member
    out: dict[str, float] = {}
    for kind, pool in (("threads", rest[:half]), ("processes", rest[half:])):
        slices = [pool[k::args.workers] for k in range(args.workers)]
        codes = ["S00"] * args.workers
        run = run_threads if kind == "threads" else run_processes
        done = (run(url, rules, slices, codes, args.duration, f"{kind[0]}w", False)
                if kind == "threads" else
                run(url, slices, codes, args.duration, f"{kind[0]}w", False))
        rate = _report(results, f"redeem.{kind}.per_s", done,
                       f"{args.workers} {kind}, distinct members, {PRICE}-point reward")
        out[kind] = rate
    # Contended: no warm-up redemption (it could be refused); every refusal is a figure.
    store = Store(url, pool_size=args.workers)
    try:
        done = [None] * args.workers
        barrier = threading.Barrier(args.workers)

        def work(k: int) -> None:
            barrier.wait(timeout=60)
            done[k] = redeem_loop(store, rules, hot, "HOT", args.duration, f"hot{k}", True, k)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(args.workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        store.dispose()
    out["contended"] = _report(results, "redeem.contended.per_s", done,
                               f"{args.workers} threads on {CONTENDED_MEMBERS} members, "
                               f"{DEAR:,}-point reward (about two each)")
    out["contended_ok"] = sum(r.ok for r in done)
    return out


def _report(results: Results, name: str, outcome: list, note: str) -> float:
    ok = sum(r.ok for r in outcome)
    failures = sum((r.failures for r in outcome), Counter())
    elapsed = max(r.elapsed for r in outcome)
    lat = latency_ms([x for r in outcome for x in r.latencies])
    refused = ", ".join(f"{k} {v}" for k, v in failures.items())
    results.add(name, "postgresql", ok / elapsed, "redemptions/s",
                f"{note}; p50/p99 {lat['p50']:.1f}/{lat['p99']:.1f} ms"
                + (f"; refused: {refused}" if refused else ""))
    log(f"  {name}: {ok / elapsed:,.1f}/s ({ok} in {elapsed:.1f} s), p99 {lat['p99']:.1f} ms"
        + (f", refused: {refused}" if refused else ""))
    return ok / elapsed


def overspend_check(url: str, contended_ok: int) -> list[str]:
    """What would be an overspend or a double debit, in plain words (empty: none)."""
    engine = create_engine(url)
    problems = []
    try:
        with engine.connect() as conn:
            def one(sql: str) -> int:
                return int(conn.exec_driver_sql(sql).scalar() or 0)

            negative = one("SELECT count(*) FROM (SELECT msisdn FROM ledger GROUP BY msisdn "
                           "HAVING sum(amount) < 0) x")
            lots = one("SELECT count(*) FROM points_lots WHERE remaining < 0")
            debited = one("SELECT -sum(amount) FROM ledger WHERE kind = 'debit'")
            ordered = one("SELECT sum(points) FROM orders")
            hot = one("SELECT count(*) FROM orders WHERE reward_code = 'HOT'")
    finally:
        engine.dispose()
    if negative:
        problems.append(f"{negative} member(s) with a ledger balance below zero")
    if lots:
        problems.append(f"{lots} lot(s) with remaining below zero")
    if debited != ordered:
        problems.append(f"{debited} points debited but orders worth {ordered}")
    if hot != contended_ok:
        problems.append(f"contended run: {hot} orders for {contended_ok} successes")
    return problems


def loyalty_check_ledger(url: str) -> tuple[bool, str]:
    """``loyalty check ledger`` as an operator runs it, on the bench's schema."""
    done = subprocess.run([sys.executable, "-m", "core.cli", "check", "ledger"], cwd=ROOT,
                          env=dict(os.environ, LOYALTY_DATABASE_URL=url, PYTHONPATH=str(ROOT)),
                          capture_output=True, text=True, timeout=600)
    last = (done.stdout.strip().splitlines() or [""])[-1]
    return done.returncode == 0 and last == "ledger consistent", last or done.stderr[-200:]


def pgbench_tps(pg_url: str, scale: int, clients: int, duration: float) -> float:
    """TPC-B tps of ``pgbench`` in a database of its own, created and dropped here."""
    u = make_url(pg_url).set(drivername="postgresql")
    admin = create_engine(u.set(database="postgres"), isolation_level="AUTOCOMMIT")
    env = dict(os.environ, PGPASSWORD=u.password or "")
    conn_args = ["-h", u.host or "127.0.0.1", "-p", str(u.port or 5432), "-U",
                 u.username or "postgres"]
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {PGBENCH_DB}")
            conn.exec_driver_sql(f"CREATE DATABASE {PGBENCH_DB}")
        try:
            subprocess.run(["pgbench", *conn_args, "-i", "-q", "-s", str(scale), PGBENCH_DB],
                           env=env, check=True, capture_output=True, text=True)
            done = subprocess.run(
                ["pgbench", *conn_args, "-c", str(clients), "-j", str(min(clients, 2)), "-T",
                 str(max(1, round(duration))), PGBENCH_DB],
                env=env, check=True, capture_output=True, text=True)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {PGBENCH_DB}")
    finally:
        admin.dispose()
    match = re.search(r"tps = ([\d.]+) \((?:without|excluding)", done.stdout)
    if not match:
        raise RuntimeError(f"pgbench printed no tps:\n{done.stdout}\n{done.stderr}")
    return float(match.group(1))


def run(args: argparse.Namespace) -> int:
    rules = load_rules()
    results = Results("pg", params=dict(
        members=args.members, lots=args.lots, workers=args.workers, duration_s=args.duration,
        pgbench_scale=args.scale, load_average_at_start=[round(x, 2) for x in os.getloadavg()]))
    with fresh_database("postgresql", pg_url=args.pg_url) as url:
        log(f"[postgresql] building {args.members:,} members and {args.lots:,} lots")
        with stopwatch() as took:
            build(url, rules, args.members, args.lots)
        results.add("build.seconds", "postgresql", took[0], "s",
                    f"{args.members:,} members, {args.lots:,} lots + ledger, bulk SQL")
        store = Store(url)
        try:
            check_built(store, rules, args.members, args.lots)
            lat = bench_balance(store, rules, args.members, args.samples, args.seed)
        finally:
            store.dispose()
        results.add("balance.p50_ms", "postgresql", lat["p50"], "ms",
                    f"{lat['n']:,} random members of {args.members:,}, "
                    f"{args.lots // args.members} lots each")
        results.add("balance.p99_ms", "postgresql", lat["p99"], "ms")
        log(f"  balance: p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms")
        rates = redemption_runs(url, rules, args, results)
        problems = overspend_check(url, int(rates["contended_ok"]))
        results.add("overspend.problems", "postgresql", len(problems), "problems",
                    "; ".join(problems) or "no member or lot below zero, debits = orders")
        clean, said = loyalty_check_ledger(url)
        results.add("check_ledger.clean", "postgresql", int(clean), "bool",
                    f"`loyalty check ledger`: {said}")
        log(f"  overspend: {problems or 'none'}; check ledger: {said}")
    log(f"  pgbench: scale {args.scale}, {args.workers} clients, {args.duration:g} s")
    tps = pgbench_tps(args.pg_url, args.scale, args.workers, args.duration)
    results.add("pgbench.tps", "postgresql", tps, "tps",
                f"TPC-B, scale {args.scale}, {args.workers} clients, same server, same run")
    for kind in ("threads", "processes"):
        results.add(f"redeem.{kind}.ratio_to_pgbench", "postgresql", rates[kind] / tps, "x",
                    f"redemptions/s with {args.workers} {kind} / pgbench tps")
    log(f"  pgbench: {tps:,.0f} tps; redemptions/s per tps: threads "
        f"{rates['threads'] / tps:.3f}, processes {rates['processes'] / tps:.3f}")
    if args.json:
        print(results.to_json(postgresql=pg_server_version(args.pg_url)))
        results.print_table(file=sys.stderr)
    else:
        results.print_table()
    return 0 if clean and not problems else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.pg_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", type=int, help="members (default 100000)")
    p.add_argument("--lots", type=int, help="points lots (default 10 per member)")
    p.add_argument("--samples", type=int, default=2000, help="balance queries timed")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--duration", type=float, help="seconds per run, and pgbench's (10)")
    p.add_argument("--scale", type=int, help="pgbench scale factor (default --workers)")
    p.add_argument("--seed", type=int, default=20261205)
    p.add_argument("--quick", action="store_true", help="2k members, 1 s runs, scale 1")
    p.add_argument("--pg-url", default=DEFAULT_PG_URL)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    args.members = args.members or (2_000 if args.quick else 100_000)
    args.lots = args.lots or 10 * args.members
    args.duration = args.duration or (1.0 if args.quick else 10.0)
    args.scale = args.scale or (1 if args.quick else args.workers)
    if args.quick:
        args.samples = min(args.samples, 200)
    if args.members < 2 * (CONTENDED_MEMBERS + args.workers):
        p.error(f"need at least {2 * (CONTENDED_MEMBERS + args.workers)} members")
    return args


def main(argv: list[str] | None = None) -> int:
    exit_on_sigterm()
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
