"""PostgreSQL: what one redemption and one balance query cost, one thread, no contention.

    .venv/bin/python -m bench.pg_round_trips [--members 4000] [--n 400] [--pg-url URL]

A private schema (``bench.core_bench.build``, 10 lots per member). Per unit of work: the
round trips (libpq's protocol trace: every Sync or simple Query the client sends ends one),
the client's thread CPU and the wall time, median (and p99 wall); then the server's own time
per ``loyalty_redeem`` call, N calls in one DO block (no client, no network). Figures a loaded
machine distorts least: a round trip count does not vary, and CPU per unit of work varies
far less than a rate.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

from sqlalchemy import event
from sqlalchemy.exc import DBAPIError

from bench.common import DEFAULT_PG_URL, fresh_database
from bench.core_bench import NOW, add_reward, build, load_rules, msisdn
from core.accounts import balance
from core.domain import Channel
from core.redemption import redeem
from core.rules import ProgrammeRules
from core.store import Store


def client_costs(store: Store, rules: ProgrammeRules, members: int, n: int, trace: str | None
                 ) -> dict[str, str]:
    def sent() -> int:
        if trace is None:
            return 0
        with open(trace, "rb") as f:
            return sum(1 for line in f if b"\tF\t" in line
                       and (b"\tSync" in line or b"\tQuery\t" in line))

    def redeem_one(i: int) -> None:
        with store.unit_of_work() as uow:
            redeem(uow, rules, msisdn(i % members + 1), "S00", Channel.SMS, f"rt-{i}", NOW)

    def balance_one(i: int) -> None:
        with store.unit_of_work(write=False) as uow:
            balance(uow, rules, msisdn(i % members + 1), NOW)

    out = {}
    for name, op in (("redemption", redeem_one), ("balance", balance_one)):
        for i in range(50):
            op(n + i)  # warm the pool and the statement caches
        before = sent()
        cpu, wall = [], []
        for i in range(n):
            c0, w0 = time.thread_time(), time.perf_counter()
            op(i)
            cpu.append(time.thread_time() - c0)
            wall.append(time.perf_counter() - w0)
        trips = f"{(sent() - before) / n:.2f} round trips, " if trace else ""
        out[name] = (f"{trips}client CPU {statistics.median(cpu) * 1e6:.0f} us, wall "
                     f"{statistics.median(wall) * 1e6:.0f} us (p99 "
                     f"{sorted(wall)[int(0.99 * n)] * 1e6:.0f} us)")
    return out


def server_time_us(store: Store, rules: ProgrammeRules, n: int) -> float:
    """Microseconds of server time per ``loyalty_redeem`` call, rolled back afterwards."""
    tiers = "{" + ",".join(t.code for t in rules.tiers) + "}"
    thresholds = "{" + ",".join(str(t.threshold) for t in rules.tiers) + "}"
    notices: list[str] = []
    with store.engine.connect() as conn:
        conn.connection.dbapi_connection.add_notice_handler(
            lambda d: notices.append(d.message_primary))
        conn.exec_driver_sql(f"""DO $$ DECLARE t0 timestamptz := clock_timestamp(); i int;
            BEGIN FOR i IN 1..{int(n)} LOOP
              PERFORM * FROM loyalty_redeem(jsonb_build_object('order_no', '', 'msisdn',
                (13900000000 + i)::text, 'reward_code', '', 'reward_kind', '', 'points', 0,
                'status', 'confirmed', 'channel', 'sms', 'request_id', 'server-' || i,
                'created_at', '2026-11-22T04:00:00', 'delivery_address', NULL,
                'fulfil_due_at', NULL, 'fulfil_attempts', 0), 'S00', '2026-11-22', '261122',
                '{{suspended,arrears}}', '{tiers}', '{thresholds}', '2025-11-23',
                '{{bill,tenure,ontime,partner}}', '{{service,voucher}}', 'debit', 'redeem ',
                'pending', 2147483647);
            END LOOP;
            RAISE NOTICE '%%', extract(epoch FROM clock_timestamp() - t0) * 1e6 / {int(n)};
            END $$""")
        conn.rollback()
    return float(notices[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pg_round_trips", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", type=int, default=4000)
    p.add_argument("--n", type=int, default=400, help="units of work timed, per kind")
    p.add_argument("--pg-url", default=DEFAULT_PG_URL)
    args = p.parse_args(argv)
    rules = load_rules()
    with fresh_database("postgresql", pg_url=args.pg_url) as url:
        build(url, rules, args.members, 10 * args.members)
        add_reward(url, "S00")
        for traced in (True, False):  # the trace costs CPU: counted apart from the timing
            trace = tempfile.NamedTemporaryFile(delete=False) if traced else None
            store = Store(url, pool_size=1)
            if trace is not None:
                fd = trace.fileno()
                event.listen(store.engine, "connect",
                             lambda dbapi_conn, _r, fd=fd: dbapi_conn.pgconn.trace(fd))
            try:
                for name, said in client_costs(store, rules, args.members, args.n,
                                               trace.name if trace else None).items():
                    print(f"{name} ({'traced' if traced else 'timed'}): {said}")
            finally:
                store.dispose()
                if trace is not None:
                    os.unlink(trace.name)
        store = Store(url, pool_size=1)
        try:
            print(f"server time per loyalty_redeem call: "
                  f"{server_time_us(store, rules, min(args.n, args.members)):.0f} us")
        except DBAPIError as exc:  # a schema before 0011_pg_redeem_one_call
            print(f"server time per loyalty_redeem call: n/a ({exc.orig})")
        finally:
            store.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
