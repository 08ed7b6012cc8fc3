"""The SMS channel's database work per MO, by stage, without the reactor or a peer.

    .venv/bin/python -m bench.sms_db_bench [--members 10000] [--batches 1,10,50] [--mos 4000]
        [--sets balance,mix] [--backend sqlite|postgresql] [--pg-url URL] [--statements]
        [--rounds] [--profile FILE]

Runs on one thread, in order, what the database thread does for every round trip: store the
MO (``store_mo_batch``), handle it (``handle_batch``: claim, read, reply queued and claimed),
record its submit_sm_resp (``record_events`` with the outcome) and its delivery receipt
(``record_events`` with the receipt), each stage as one unit of work over ``--batch`` MO at
once, as the SMS channel batches them under load. Reports the thread's CPU per MO for each
stage and in all (``time.thread_time``: steady on a shared machine, unlike a rate), so a
change to the hot path can be measured on its own; ``bench.sms_peer_bench`` measures the
whole server against a third-party SMSC. ``--statements`` also counts the statements each
stage sends per batch (on PostgreSQL each is a round trip: the fixed cost of a round). It
counts with a cursor listener, which takes the raw statements off their fast path on
PostgreSQL, so that run's CPU figures are higher than without it.

``--rounds``: the stages as the SMS channel's lane runs them (``DatabaseService.run_steps``),
one trip a batch: storing the batch and recording the last batch's submit outcomes and the
receipts of the one before in one transaction, then handling the batch in its own. One
figure, the round's CPU per MO; its fixed part (batch 1 against a large batch) is what
several processes sharing one load pay more often (``bench.scale_bench``).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import DEFAULT_PG_URL, fresh_database, log, populate
from bench.sms_bench import bench_members, msisdn
from bench.sms_peer_bench import keyword_texts

STAGES = ("store", "handle", "submitted", "receipt")


def run(args: argparse.Namespace) -> int:
    from twisted.internet import reactor

    from core.config import load_config
    from core.messaging.outbox import Outcome, record_events
    from core.messaging.receipts import ReceiptItem
    from core.rules import ProgrammeRules
    from core.store import Store
    from ops.dbservice import DatabaseService
    from sms.esme_types import MOMessage
    from sms.handler import HandlerSettings, handle_batch, store_mo_batch
    from sms.pdu import normalise_message_id

    config = load_config(environ={})
    rules = ProgrammeRules(config.programme, config.tiers)
    settings = HandlerSettings(rate_limit=1000, max_parts=config.smpp.max_parts)
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile(time.thread_time)
    from sqlalchemy import event

    stages = ("round",) if args.rounds else STAGES
    print(f"{'set':8} {'batch':>5}  " + "  ".join(f"{s:>9}" for s in stages)
          + "      all  (us of database-thread CPU per MO"
          + ("; statements per batch)" if args.statements else ")"))
    for kind in args.sets.split(","):
        texts = keyword_texts(kind)
        for batch in [int(b) for b in args.batches.split(",")]:
            with fresh_database(args.backend, pg_url=args.pg_url) as url:
                log(f"building {args.members:,} members for {kind}, batch {batch}")
                populate(url, bench_members(args.members, datetime.now(UTC).date()))
                store = Store(url)
                sent = [0]  # statements sent (executemany: one)
                if args.statements:
                    @event.listens_for(store.engine, "before_cursor_execute")
                    def _count(*_: Any, sent: list[int] = sent) -> None:
                        sent[0] += 1

                numbers = itertools.cycle(range(1, args.members + 1))
                spelling = itertools.count()
                cpu = dict.fromkeys(stages, 0.0)
                statements = dict.fromkeys(stages, 0)
                now = datetime.now(UTC)
                done = 0
                serial = itertools.count(1)

                def unit(stage: str, fn: Any, *a: Any, measured: bool, store: Any = store,
                         cpu: dict[str, float] = cpu, statements: dict[str, int] = statements,
                         sent: list[int] = sent) -> Any:
                    c, before = time.thread_time(), sent[0]
                    if profiler is not None and measured:
                        profiler.enable()
                    with store.unit_of_work() as uow:
                        result = fn(uow, rules, *a)
                    if profiler is not None and measured:
                        profiler.disable()
                    if measured:
                        cpu[stage] += time.thread_time() - c
                        statements[stage] += sent[0] - before
                    return result

                def events(rows: Any, serial: Any = serial) -> tuple[list[Any], list[Any]]:
                    """The submit outcomes and delivery receipts of replies sent."""
                    outcomes, receipts = [], []
                    for row in rows:
                        mid = f"{next(serial):08x}"
                        outcomes.append(Outcome(row.id, (mid,), ((0, mid),), "submitted",
                                                attempt=row.attempts))
                        receipts.append(ReceiptItem(frozenset(normalise_message_id(mid)), mid,
                                                    "DELIVRD", "000"))
                    return outcomes, receipts

                # --rounds: the last round's outcomes, and the receipts of the one before.
                outcomes: list[Any] = []
                receipts: list[Any] = []
                receipts_next: list[Any] = []
                db = DatabaseService(store, rules, reactor)  # its pool is not started
                warm = max(500, 5 * batch)
                while done < args.mos + warm:
                    measured = done >= warm
                    now += timedelta(milliseconds=20)
                    mos = []
                    for _ in range(batch):
                        n = next(numbers)
                        text = texts[next(spelling) % len(texts)]
                        mos.append(MOMessage(msisdn(n), "10658", text, True, None, text, 0, 0,
                                             f"k{next(serial)}"))
                    if args.rounds:  # as the SMS channel's lane runs them (DatabaseService)
                        c, before = time.thread_time(), sent[0]
                        front = [(store_mo_batch, (mos, now, settings.dedupe_window_s)),
                                 (record_events, (outcomes, receipts, now,
                                                  normalise_message_id))]
                        if profiler is not None and measured:
                            profiler.enable()
                        # run_steps' own driver, on this thread (run_steps hops to the pool).
                        handled = db._steps(front + [(handle_batch, (
                            settings, now, batch, now + timedelta(seconds=60)))],
                            together=len(front))[-1]
                        if profiler is not None and measured:
                            profiler.disable()
                        if measured:
                            cpu["round"] += time.thread_time() - c
                            statements["round"] += sent[0] - before
                        new_outcomes, new_receipts = events(handled.claimed)
                        outcomes, receipts, receipts_next = (new_outcomes, receipts_next,
                                                             new_receipts)
                        done += batch
                        continue
                    unit("store", store_mo_batch, mos, now, settings.dedupe_window_s,
                         measured=measured)
                    handled = unit("handle", handle_batch, settings, now, batch,
                                   now + timedelta(seconds=60), measured=measured)
                    outcomes, receipts = events(handled.claimed)
                    unit("submitted", record_events, outcomes, [], now, normalise_message_id,
                         measured=measured)
                    unit("receipt", record_events, [], receipts, now, normalise_message_id,
                         measured=measured)
                    done += batch
                store.dispose()
                n = done - warm
                per = {s: 1e6 * cpu[s] / n for s in stages}
                print(f"{kind:8} {batch:>5}  " + "  ".join(f"{per[s]:9.1f}" for s in stages)
                      + f"  {sum(per.values()):7.1f}", flush=True)
                if args.statements:
                    per = {s: statements[s] * batch / n for s in stages}
                    print(f"{'':8} {'':>5}  " + "  ".join(f"{per[s]:9.1f}" for s in stages)
                          + f"  {sum(per.values()):7.1f}", flush=True)
    if profiler is not None:
        profiler.dump_stats(args.profile)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", type=int, default=10000)
    p.add_argument("--batches", default="1,10,50")
    p.add_argument("--mos", type=int, default=4000, help="MO measured per set and batch size")
    p.add_argument("--sets", default="balance,mix")
    p.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--pg-url", default=DEFAULT_PG_URL)
    p.add_argument("--statements", action="store_true",
                   help="also count the statements of each stage (slower on PostgreSQL)")
    p.add_argument("--rounds", action="store_true",
                   help="run the stages as the SMS channel's lane does: one trip a batch, "
                        "storing and recording events in one transaction, then handling")
    p.add_argument("--profile", help="cProfile the measured stages (thread CPU) into this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
