"""Core store benchmark: bulk build, balance latency, CSV import rate, concurrent redemptions.

    .venv/bin/python -m bench.core_bench [--backend sqlite|postgresql|both] [--members 100000]
        [--lots 1000000] [--duration 10] [--quick] [--json] [--pg-url URL]

Every database is a throw-away one (a SQLite file in a temporary directory, or a private
PostgreSQL schema) dropped at the end. Progress goes to stderr; the result table to stdout (with
``--json`` stdout carries a JSON document instead and the table goes to stderr). The exit
status is 1 when the ledger check after the concurrency runs finds a problem.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import os
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Boolean, Column, Date, Integer, MetaData, Table, bindparam, insert, text

from bench.common import (
    DEFAULT_PG_URL,
    Results,
    exit_on_sigterm,
    fresh_database,
    latency_ms,
    log,
    pg_server_version,
    refresh_statistics,
    scratch_dir,
    stopwatch,
)
from core.accounts import balance, check_ledger
from core.config import load_config
from core.domain import Channel, DomainError, Reward
from core.imports import import_members, import_points
from core.redemption import redeem
from core.rules import ProgrammeRules, expiry_for
from core.store import Store
from core.store.tables import UTCDateTime

NOW = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai, as in the tests
FIRST_DAY = date(2024, 1, 1)                      # lots are earned over three calendar years,
LAST_DAY = date(2026, 11, 21)                     # so they expire in three different batches
MSISDN_BASE = 13900000000
SOURCES = ("bill", "tenure", "ontime", "partner")
PRICE = 10
CONTENDED_MEMBERS = 50


def msisdn(i: int) -> str:
    """Member number i (1-based) of a built database."""
    return str(MSISDN_BASE + i)


def lot_amount(j: int) -> int:
    """Points of lot j (1-based); the same formula is in the build SQL."""
    return 50 + (j * 37) % 951


def load_rules() -> ProgrammeRules:
    config = load_config(environ={})
    return ProgrammeRules(config.programme, config.tiers)


# --- 1. build -----------------------------------------------------------------------------


def build(url: str, rules: ProgrammeRules, n_members: int, n_lots: int) -> None:
    """Members, lots spread over three years and one credit ledger entry per lot, in bulk SQL.

    Dates and instants go through SQLAlchemy's own types (a small day table) so they are
    stored exactly as the store stores them on either backend.
    """
    store = Store(url)
    pg = not store.is_sqlite
    n_days = (LAST_DAY - FIRST_DAY).days + 1
    days = Table("bench_days", MetaData(), Column("k", Integer, primary_key=True),
                 Column("earned_on", Date), Column("expires_at", UTCDateTime),
                 prefixes=["TEMPORARY"])

    def series(n: int) -> str:  # s(i) = 1..n, 64-bit on both backends
        if pg:
            return f"WITH s(i) AS (SELECT generate_series(1::bigint, {int(n)}))"
        return f"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {int(n)})"

    typed = dict(no=bindparam("no", False, type_=Boolean),
                 at=bindparam("at", NOW, type_=UTCDateTime))
    try:
        with store.engine.connect() as conn:
            days.create(conn)
            conn.execute(insert(days), [
                dict(k=k, earned_on=day, expires_at=expiry_for(day, rules.programme))
                for k in range(n_days) for day in [FIRST_DAY + timedelta(days=k)]])
            conn.execute(text(f"""{series(n_members)}
                INSERT INTO members (msisdn, name, language, tier_code, warning_opt_out,
                                     warning_channel, pin_failures, created_at)
                SELECT CAST({MSISDN_BASE} + i AS VARCHAR(20)), '会员' || i,
                       CASE WHEN i % 5 = 0 THEN 'en' ELSE 'zh' END, '{rules.tiers[0].code}',
                       :no, 'sms', 0, :at
                FROM s""").bindparams(*typed.values()))
            sources = " ".join(f"WHEN {n} THEN '{s}'" for n, s in enumerate(SOURCES))
            conn.execute(text(f"""{series(n_lots)}
                INSERT INTO points_lots (msisdn, amount, remaining, source, earned_on,
                                         expires_at, reference, expired, created_at)
                SELECT CAST({MSISDN_BASE} + (i - 1) % {int(n_members)} + 1 AS VARCHAR(20)),
                       50 + (i * 37) % 951, 50 + (i * 37) % 951,
                       CASE i % {len(SOURCES)} {sources} END,
                       d.earned_on, d.expires_at, NULL, :no, :at
                FROM s JOIN bench_days d ON d.k = (i * 7919) % {n_days}
                ORDER BY i""").bindparams(*typed.values()))
            conn.execute(text("""
                INSERT INTO ledger (msisdn, kind, amount, reason, channel, created_at)
                SELECT msisdn, 'credit', amount, source, 'import', created_at
                FROM points_lots ORDER BY id"""))
            days.drop(conn)
            conn.commit()
        refresh_statistics(store.engine)
    finally:
        store.dispose()


def database_size_mb(url: str) -> float:
    store = Store(url)
    try:
        if store.is_sqlite:
            path = store.engine.url.database
            return sum(os.path.getsize(path + s) for s in ("", "-wal")
                       if os.path.exists(path + s)) / 2**20
        with store.engine.connect() as conn:
            return conn.exec_driver_sql(
                "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND c.relkind = 'r'").scalar() / 2**20
    finally:
        store.dispose()


def check_built(store: Store, rules: ProgrammeRules, n_members: int, n_lots: int) -> None:
    """A few balances must equal what the formulas put in; catches a wrong build early."""
    for i in (1, n_members // 2 + 1, n_members):
        expected = sum(lot_amount(j) for j in range(i, n_lots + 1, n_members))
        with store.unit_of_work(write=False) as uow:
            got = balance(uow, rules, msisdn(i), NOW).points
        if got != expected:
            raise SystemExit(f"build check failed: member {i} has {got}, expected {expected}")


# --- 2. balance latency -------------------------------------------------------------------


def bench_balance(store: Store, rules: ProgrammeRules, n_members: int, samples: int,
                  seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    picks = [msisdn(i + 1) for i in rng.sample(range(n_members), min(samples, n_members))]
    for number in picks[:50]:  # warm the pool and the statement cache
        with store.unit_of_work(write=False) as uow:
            balance(uow, rules, number, NOW)
    rng.shuffle(picks)
    durations = []
    for number in picks:
        start = time.perf_counter()
        with store.unit_of_work(write=False) as uow:
            balance(uow, rules, number, NOW)
        durations.append(time.perf_counter() - start)
    return latency_ms(durations) | dict(n=len(durations))


# --- 3. imports ---------------------------------------------------------------------------


def write_csvs(folder: str, n_members: int, n_rows: int, seed: int) -> tuple[str, str]:
    rng = random.Random(seed)
    members_csv, points_csv = os.path.join(folder, "members.csv"), \
        os.path.join(folder, "points.csv")
    with open(members_csv, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(("msisdn", "name", "language"))
        out.writerows((msisdn(i), f"会员{i}", "en" if i % 5 == 0 else "zh")
                      for i in range(1, n_members + 1))
    n_days = (LAST_DAY - FIRST_DAY).days + 1
    with open(points_csv, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(("msisdn", "points", "source", "earned_on", "reference"))
        out.writerows((msisdn(rng.randint(1, n_members)), rng.randint(1, 1000),
                       rng.choice(SOURCES), FIRST_DAY + timedelta(days=rng.randrange(n_days)),
                       f"BILL-{r:08d}") for r in range(1, n_rows + 1))
    return members_csv, points_csv


def bench_imports(backend: str, pg_url: str, rules: ProgrammeRules, n_members: int,
                  n_rows: int, seed: int, workdir: str, results: Results) -> None:
    members_csv, points_csv = write_csvs(workdir, n_members, n_rows, seed)
    with fresh_database(backend, pg_url=pg_url, workdir=workdir) as url:
        store = Store(url)
        try:
            for name, use_case, path, rows in (
                    ("import.members", import_members, members_csv, n_members),
                    ("import.points", import_points, points_csv, n_rows),
                    ("import.points_again", import_points, points_csv, n_rows)):
                with stopwatch() as took, store.unit_of_work() as uow:
                    report = use_case(uow, rules, path, NOW)
                note = f"{rows:,} rows in {took[0]:.1f} s"
                if name == "import.points_again":
                    note += f", {report.skipped:,} skipped (idempotent re-import)"
                elif name == "import.members":
                    note += ", no PINs"
                results.add(f"{name}.rows_per_s", backend, rows / took[0], "rows/s", note)
                log(f"  {name}: {rows / took[0]:,.0f} rows/s ({note})")
            with store.unit_of_work(write=False) as uow:
                problems = check_ledger(uow, rules)
            if problems:
                raise SystemExit(f"ledger problems after import: {problems[:5]}")
        finally:
            store.dispose()


# --- 4. concurrent redemptions ------------------------------------------------------------


@dataclass
class WorkerResult:
    ok: int = 0
    failures: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0


def redeem_loop(store: Store, rules: ProgrammeRules, numbers: list[str], reward: str,
                duration: float, tag: str, contended: bool, seed: int) -> WorkerResult:
    """Redeem for ``duration`` seconds: the numbers in turn, or at random when contended."""
    rng = random.Random(seed)
    result = WorkerResult()
    begin = time.perf_counter()
    deadline, i = begin + duration, 0
    while time.perf_counter() < deadline:
        number = rng.choice(numbers) if contended else numbers[i % len(numbers)]
        start = time.perf_counter()
        try:
            with store.unit_of_work() as uow:
                redeem(uow, rules, number, reward, Channel.SMS, f"{tag}-{i}", NOW)
            result.ok += 1
        except DomainError as exc:
            result.failures[type(exc).__name__] += 1
        except Exception as exc:  # noqa: BLE001 - deadlocks etc. are figures, not crashes
            result.failures[type(exc).__name__] += 1
        result.latencies.append(time.perf_counter() - start)
        i += 1
    result.elapsed = time.perf_counter() - begin
    return result


def _warm_up(store: Store, rules: ProgrammeRules, number: str, reward: str, tag: str) -> None:
    with store.unit_of_work() as uow:
        redeem(uow, rules, number, reward, Channel.SMS, f"{tag}-warm", NOW)


def run_threads(url: str, rules: ProgrammeRules, slices: list[list[str]], rewards: list[str],
                duration: float, tag: str, contended: bool) -> list[WorkerResult]:
    store = Store(url, pool_size=len(slices))  # one connection per worker
    barrier = threading.Barrier(len(slices))
    results: list[WorkerResult | None] = [None] * len(slices)

    def work(k: int) -> None:
        _warm_up(store, rules, slices[k][-1], rewards[k], f"{tag}{k}")
        barrier.wait(timeout=300)
        results[k] = redeem_loop(store, rules, slices[k], rewards[k], duration, f"{tag}{k}",
                                 contended, k)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(slices))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        store.dispose()
    return [r for r in results if r is not None]


def _process_worker(url, k, numbers, reward, duration, tag, contended, barrier, queue) -> None:
    rules = load_rules()
    store = Store(url, pool_size=1)
    try:
        _warm_up(store, rules, numbers[-1], reward, f"{tag}{k}")
        barrier.wait(timeout=300)
        queue.put(redeem_loop(store, rules, numbers, reward, duration, f"{tag}{k}",
                              contended, k))
    finally:
        store.dispose()


def run_processes(url: str, slices: list[list[str]], rewards: list[str], duration: float,
                  tag: str, contended: bool) -> list[WorkerResult]:
    ctx = multiprocessing.get_context("spawn")  # no engine or connection crosses a fork
    barrier, queue = ctx.Barrier(len(slices)), ctx.Queue()
    procs = [ctx.Process(target=_process_worker, args=(
        url, k, slices[k], rewards[k], duration, tag, contended, barrier, queue))
        for k in range(len(slices))]
    for p in procs:
        p.start()
    try:
        results = [queue.get(timeout=duration + 120) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
    return results


def add_reward(url: str, code: str) -> None:
    store = Store(url)
    try:
        with store.unit_of_work() as uow:
            uow.orders.upsert_reward(Reward(code, f"流量包{code}", f"Data pack {code}", "service",
                                            PRICE, None, None, None, None, 1))
            uow.commit()
    finally:
        store.dispose()


def bench_redemptions(url: str, rules: ProgrammeRules, n_members: int, workers: int,
                      duration: float, processes: bool, seed: int, results: Results) -> None:
    rewards = [f"S{k:02d}" for k in range(workers)]
    for code in rewards:
        add_reward(url, code)
    rng = random.Random(seed)
    order = [msisdn(i) for i in range(1, n_members + 1)]
    rng.shuffle(order)
    hot, rest = order[:CONTENDED_MEMBERS], order[CONTENDED_MEMBERS:]
    distinct = [rest[k::workers] for k in range(workers)]
    same = [rewards[0]] * workers
    runs = [("threads.distinct", "threads", distinct, same, False,
             f"{workers} threads, distinct members, one reward"),
            ("threads.contended", "threads", [hot] * workers, same, True,
             f"{workers} threads, all on the same {CONTENDED_MEMBERS} members"),
            ("threads.distinct_rewards", "threads", distinct, rewards, False,
             f"{workers} threads, distinct members, one reward per thread")]
    if processes:
        runs += [("processes.distinct", "processes", distinct, same, False,
                  f"{workers} processes, distinct members, one reward"),
                 ("processes.contended", "processes", [hot] * workers, same, True,
                  f"{workers} processes, all on the same {CONTENDED_MEMBERS} members")]
    for n, (name, kind, slices, codes, contended, note) in enumerate(runs):
        # Distinct runs start at different offsets, so no member is reused across runs.
        slices = [s[n * 1000 % max(1, len(s)):] + s[:n * 1000 % max(1, len(s))]
                  for s in slices] if not contended else slices
        tag = f"r{n}w"
        if kind == "threads":
            outcome = run_threads(url, rules, slices, codes, duration, tag, contended)
        else:
            outcome = run_processes(url, slices, codes, duration, tag, contended)
        ok = sum(r.ok for r in outcome)
        failures = sum((r.failures for r in outcome), Counter())
        elapsed = max(r.elapsed for r in outcome)
        lat = latency_ms([x for r in outcome for x in r.latencies])
        fail_note = (", failures: " + ", ".join(f"{k} {v}" for k, v in failures.items())
                     if failures else "")
        results.add(f"redeem.{name}.per_s", "postgresql", ok / elapsed, "redemptions/s",
                    f"{note}, {elapsed:.1f} s{fail_note}")
        results.add(f"redeem.{name}.p50_ms", "postgresql", lat["p50"], "ms")
        results.add(f"redeem.{name}.p99_ms", "postgresql", lat["p99"], "ms")
        log(f"  {name}: {ok / elapsed:,.0f} redemptions/s, p50 {lat['p50']:.1f} ms, "
            f"p99 {lat['p99']:.1f} ms{fail_note}")


# --- driver -------------------------------------------------------------------------------


def bench_backend(backend: str, args: argparse.Namespace, rules: ProgrammeRules,
                  results: Results) -> bool:
    """All figures for one backend; returns False when the ledger check found problems."""
    consistent = True
    with scratch_dir() as workdir:
        log(f"[{backend}] building {args.members:,} members and {args.lots:,} lots")
        with fresh_database(backend, pg_url=args.pg_url, workdir=workdir) as url:
            with stopwatch() as took:
                build(url, rules, args.members, args.lots)
            rows = args.members + 2 * args.lots
            results.add("build.seconds", backend, took[0], "s",
                        f"{args.members:,} members, {args.lots:,} lots + ledger, "
                        f"{rows / took[0]:,.0f} rows/s, {database_size_mb(url):,.0f} MB")
            log(f"  build: {took[0]:.1f} s")
            store = Store(url)
            try:
                check_built(store, rules, args.members, args.lots)
                lat = bench_balance(store, rules, args.members, args.samples, args.seed)
            finally:
                store.dispose()
            note = f"{lat['n']:,} random members, {args.lots // args.members} lots each"
            for key in ("p50", "p99", "max"):
                results.add(f"balance.{key}_ms", backend, lat[key], "ms",
                            note if key == "p50" else "")
            log(f"  balance: p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms, "
                f"max {lat['max']:.2f} ms")
            if backend == "postgresql" and not args.no_redeem:
                log(f"  redemptions: {args.workers} workers, {args.duration:g} s per run")
                bench_redemptions(url, rules, args.members, args.workers, args.duration,
                                  not args.no_processes, args.seed, results)
            store = Store(url)
            try:
                with stopwatch() as took, store.unit_of_work(write=False) as uow:
                    problems = check_ledger(uow, rules)
            finally:
                store.dispose()
            consistent = not problems
            results.add("check_ledger.problems", backend, len(problems), "problems",
                        f"whole database, {took[0]:.1f} s")
            log(f"  check_ledger: {len(problems)} problem(s) in {took[0]:.1f} s"
                + "".join(f"\n    {p}" for p in problems[:10]))
        log(f"[{backend}] imports: {args.members:,} members, {args.import_rows:,} points rows")
        bench_imports(backend, args.pg_url, rules, args.members, args.import_rows, args.seed,
                      workdir, results)
    return consistent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.core_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--members", type=int, help="members (default 100000)")
    parser.add_argument("--lots", type=int, help="points lots (default 10 per member)")
    parser.add_argument("--samples", type=int, help="balance queries timed (default 2000)")
    parser.add_argument("--import-rows", type=int, help="points CSV rows (default 100000)")
    parser.add_argument("--duration", type=float, help="seconds per redemption run (10)")
    parser.add_argument("--workers", type=int, default=8, help="concurrent redeemers (8)")
    parser.add_argument("--no-processes", action="store_true",
                        help="skip the multi-process redemption runs")
    parser.add_argument("--no-redeem", action="store_true", help="skip redemption runs")
    parser.add_argument("--quick", action="store_true",
                        help="2k members, 20k lots, 2 s runs: a smoke test in seconds")
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL,
                        help="PostgreSQL server to make private schemas in "
                             "(default: $LOYALTY_TEST_DATABASE_URL or the local server)")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON document on stdout (the table goes to stderr)")
    args = parser.parse_args(argv)
    small = args.quick
    args.members = args.members or (2_000 if small else 100_000)
    args.lots = args.lots or 10 * args.members
    args.samples = args.samples or (200 if small else 2_000)
    args.import_rows = args.import_rows or (2_000 if small else 100_000)
    args.duration = args.duration or (2.0 if small else 10.0)
    if args.members < CONTENDED_MEMBERS + args.workers or args.lots < args.members:
        parser.error(f"need at least {CONTENDED_MEMBERS + args.workers} members and one lot "
                     "per member")
    return args


def main(argv: list[str] | None = None) -> int:
    exit_on_sigterm()
    args = parse_args(argv)
    rules = load_rules()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results = Results("core", params=dict(
        backends=backends, members=args.members, lots=args.lots, samples=args.samples,
        import_rows=args.import_rows, duration_s=args.duration, workers=args.workers,
        processes=not args.no_processes, quick=args.quick, seed=args.seed,
        load_average_at_start=[round(x, 2) for x in os.getloadavg()]))
    consistent = True
    with stopwatch() as total:
        for backend in backends:
            consistent &= bench_backend(backend, args, rules, results)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    results.add("total.seconds", "-", total[0], "s",
                f"whole run; load average at start {results.params['load_average_at_start']}, "
                f"at end [{load}]")
    extra = {"postgresql": pg_server_version(args.pg_url)} if "postgresql" in backends else {}
    if args.json:
        results.print_table(file=sys.stderr)
        print(results.to_json(**extra))
    else:
        print()
        results.print_table()
    return 0 if consistent else 1


if __name__ == "__main__":
    sys.exit(main())
