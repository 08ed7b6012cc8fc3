"""Expiry-warning bench: select and queue the warnings of 1M members with 3M lots.

    .venv/bin/python -m bench.expiry_bench [--members 1000000] [--lots-per-member 3]
        [--batch 10000] [--send-seconds 15] [--backend postgresql|sqlite] [--pg-url URL]
        [--json]

Builds a throw-away database (a private PostgreSQL schema by default) with bulk SQL
(``INSERT ... SELECT generate_series``): every member has lots earned in 2024, 2025 and 2026,
so at the run instant (2026-12-01 10:00 Asia/Shanghai) the 2024 lots (last valid day 31 Dec
2026) are in the 30-day window. 2 % of members opted out, 1 % chose voice, 10 % of lots are
spent. Then it times one expiry-warnings run exactly as the scheduler does it (claim, one
batch per transaction, progress committed with each batch), checks that every warning and its
outbox row were written once, and times a forced second run (which must queue nothing).

``--send-seconds S`` then runs the SMS side's outbox sender (``sms.outbox.OutboxSender``, built
separately) over the queued warnings through the SMPP session (``sms.session.ESMEService``) to
the SMSC simulator for S seconds and reports the rate of parts accepted, against
``smpp.max_submit_rate``.

Figures are printed, not asserted (target: select + queue in under 60 s).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import bindparam, func, select, text

from bench.common import (
    DEFAULT_PG_URL,
    Results,
    exit_on_sigterm,
    fresh_database,
    log,
    pg_server_version,
    refresh_statistics,
    stopwatch,
)
from core.config import load_config
from core.jobs.runs import run_job
from core.jobs.schedule import local_instant, run_key
from core.rules import ProgrammeRules, expiry_for
from core.store import Store
from core.store.tables import UTCDateTime, expiry_warnings, outbox

MSISDN_BASE = 13000000000
YEARS = (2024, 2025, 2026)


def run_instant(rules: ProgrammeRules) -> datetime:
    from datetime import time as wall

    return local_instant(date(2026, 12, 1), wall(10, 0), rules.zone)


def build(store: Store, rules: ProgrammeRules, members: int, per_member: int) -> None:
    pg = not store.is_sqlite
    at = datetime(2026, 11, 1, tzinfo=UTC)

    def series(n: int) -> str:
        if pg:
            return f"WITH s(i) AS (SELECT generate_series(1::bigint, {int(n)}))"
        return (f"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s "
                f"WHERE i < {int(n)})")

    expiries = {y: expiry_for(date(y, 6, 1), rules.programme) for y in YEARS}
    params = [bindparam("at", at, type_=UTCDateTime)] + [
        bindparam(f"e{y}", expiries[y], type_=UTCDateTime) for y in YEARS]
    # Lot k of member i is earned in year YEARS[(i + k) % 3], so members hold 1 to 3 lots of
    # the expiring year (several lots per batch) when per_member > 3, else exactly one.
    year_case = " ".join(f"WHEN {n} THEN {y}" for n, y in enumerate(YEARS))
    expiry_case = " ".join(f"WHEN {n} THEN :e{y}" for n, y in enumerate(YEARS))
    with store.engine.connect() as conn:
        conn.execute(text(f"""{series(members)}
            INSERT INTO members (msisdn, name, language, tier_code, warning_opt_out,
                                 warning_channel, pin_failures, created_at)
            SELECT CAST({MSISDN_BASE} + i AS VARCHAR(20)), 'm' || i,
                   CASE WHEN i % 5 = 0 THEN 'en' ELSE 'zh' END, 'standard',
                   (i % 50 = 7), CASE WHEN i % 100 = 3 THEN 'voice' ELSE 'sms' END, 0, :at
            FROM s""").bindparams(params[0]))
        conn.execute(text(f"""{series(members * per_member)}
            INSERT INTO points_lots (msisdn, amount, remaining, source, earned_on, expires_at,
                                     reference, expired, created_at)
            SELECT CAST({MSISDN_BASE} + (i - 1) / {per_member} + 1 AS VARCHAR(20)),
                   100 + i % 900,
                   CASE WHEN i % 10 = 4 THEN 0 ELSE 100 + i % 900 END,
                   'bill',
                   {'make_date' if pg else 'date'}(
                       CAST(CASE ((i - 1) / {per_member} + (i - 1) % {per_member}) % 3
                            {year_case} END AS INTEGER){', 6, 1' if pg else ''}
                       {'' if pg else " || '-06-01'"}),
                   CASE ((i - 1) / {per_member} + (i - 1) % {per_member}) % 3 {expiry_case} END,
                   NULL, false, :at
            FROM s""").bindparams(*params))
        conn.commit()
    refresh_statistics(store.engine)


def runner(store: Store, rules: ProgrammeRules):
    def run(use_case, *args, write=True, **kwargs):
        with store.unit_of_work(write=write) as uow:
            return use_case(uow, rules, *args, **kwargs)
    return run


def counts(store: Store) -> tuple[int, int, int]:
    with store.engine.connect() as conn:
        return (conn.execute(select(func.count()).select_from(expiry_warnings)).scalar_one(),
                conn.execute(select(func.count()).select_from(outbox)).scalar_one(),
                conn.execute(select(func.count(func.distinct(outbox.c.dedupe_key)))).scalar_one())


def send_rate(url: str, config, rules: ProgrammeRules, run_at: datetime,
              seconds: float) -> dict[str, float] | None:
    """Let the SMS side's outbox sender (``sms.outbox.OutboxSender``) drain the queued
    warnings through the SMPP session to the SMSC simulator for ``seconds`` (after 2 s of
    warm-up) and return the rate of parts the SMSC accepted. The sender's clock starts at the
    run instant, so the warnings are due."""
    from twisted.internet import defer, endpoints, task

    from core.metrics import Metrics
    from harness.smsc_simulator import SMSCSimulator
    from ops.dbservice import DatabaseService
    from sms.outbox import OutboxSender, SenderSettings
    from sms.session import ESMEService
    from sms.session_settings import SessionSettings

    out: dict[str, float] = {}

    async def main(reactor) -> None:
        store = Store(url, pool_size=2)
        db = DatabaseService(store, rules, reactor)
        db.startService()
        sim = SMSCSimulator(config.smpp.system_id, config.smpp.password, receipts=False)
        sim.listen(0)
        esme = ESMEService(SessionSettings.from_config(config.smpp),
                           endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", sim.port),
                           lambda mo: 0, lambda receipt: 0, clock=reactor)
        esme.startService()
        sender = None
        try:
            await esme.whenBound()
            t0 = reactor.seconds()
            sender = OutboxSender(
                esme, db, Metrics(), SenderSettings(max_parts=config.smpp.max_parts),
                clock=reactor, now=lambda: run_at + timedelta(seconds=reactor.seconds() - t0))
            sender.startService()
            await task.deferLater(reactor, 2.0, lambda: None)
            n0, t1 = len(sim.submits), reactor.seconds()
            await task.deferLater(reactor, seconds, lambda: None)
            n1, t2 = len(sim.submits), reactor.seconds()
            out.update(parts=n1 - n0, seconds=t2 - t1, rate=(n1 - n0) / (t2 - t1),
                       configured=config.smpp.max_submit_rate)
        finally:
            if sender is not None:
                await sender.stopService()
            await esme.stopService()
            await sim.stop()
            await db.stopService()

    try:
        task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
    except SystemExit as done:
        if done.code:
            log("send rate measurement failed")
            return None
    return out or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--lots-per-member", type=int, default=3)
    parser.add_argument("--batch", type=int, default=None,
                        help="members per step (default: the job's own, 10000)")
    parser.add_argument("--backend", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--send-seconds", type=float, default=0, metavar="S",
                        help="also let the outbox sender send for S seconds (see above)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    exit_on_sigterm()

    config = load_config(environ={})
    rules = ProgrammeRules(config.programme, config.tiers)
    now = run_instant(rules)
    results = Results("expiry_bench", dict(members=args.members,
                                           lots=args.members * args.lots_per_member,
                                           batch=args.batch or 10_000, backend=args.backend,
                                           run_at=now.isoformat(),
                                           postgresql=pg_server_version(args.pg_url)))
    b = args.backend
    with fresh_database(args.backend, pg_url=args.pg_url) as url:
        store = Store(url, pool_size=2)
        try:
            log(f"building {args.members:,} members and "
                f"{args.members * args.lots_per_member:,} lots ...")
            with stopwatch() as t:
                build(store, rules, args.members, args.lots_per_member)
            results.add("build.seconds", b, t[0], "s", "bulk SQL + ANALYZE")

            log("expiry-warnings run ...")
            key = run_key(now, rules.zone, False)
            with stopwatch() as t:
                result = run_job(runner(store, rules), "expiry-warnings", config.jobs,
                                 lambda: now, run_key=key, batch=args.batch)
            warnings, messages, distinct = counts(store)
            results.add("run.seconds", b, t[0], "s",
                        f"select + queue, {result.steps} steps (target < 60 s)")
            results.add("run.warnings_per_s", b, warnings / t[0], "rows/s")
            results.add("run.sms_queued", b, result.counts.get("sms_30d", 0), "msgs")
            results.add("run.voice_pending", b, result.counts.get("voice", 0), "rows")
            results.add("run.opted_out", b, result.counts.get("opted_out", 0), "members")
            results.add("check.outbox_rows", b, messages, "rows",
                        "== distinct dedupe keys" if messages == distinct else "DUPLICATES")
            results.add("check.warning_rows", b, warnings, "rows")

            log("forced second run (must queue nothing) ...")
            with stopwatch() as t:
                again = run_job(runner(store, rules), "expiry-warnings", config.jobs,
                                lambda: now, run_key=key, batch=args.batch, force=True)
            after = counts(store)
            results.add("rerun.seconds", b, t[0], "s",
                        f"already warned {again.counts.get('already_warned', 0):,}; "
                        + ("nothing new" if after == (warnings, messages, distinct)
                           else "NEW ROWS"))
        finally:
            store.dispose()
        if args.send_seconds:
            log(f"outbox sender -> SMPP session -> SMSC simulator for {args.send_seconds:g} s ...")
            sent = send_rate(url, config, rules, now, args.send_seconds)
            if sent:
                results.add("send.rate", b, sent["rate"], "parts/s",
                            f"{sent['parts']:.0f} parts in {sent['seconds']:.1f} s; "
                            f"configured smpp.max_submit_rate {sent['configured']:g}")
    results.report(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
