"""``loyalty bench``: every benchmark in one run, one table.

Each bench script runs in its own process (``python -m bench.<name> --json``) so one's memory
and threads never colour another's figures; this collects their figures into one table.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from bench.common import format_value, log, print_table

# (name, module, full-run arguments, --quick arguments); the headline figures of the issues.
SUITES = (
    ("ivr", "bench.ivr_bench", ["--calls", "2000", "--concurrency", "2000"],
     ["--calls", "200", "--concurrency", "200", "--ramp", "5", "--hold", "1"]),
    ("sms", "bench.sms_bench", [], ["--duration", "2", "--warmup", "0.5", "--members", "2000"]),
    ("core", "bench.core_bench", [], ["--quick"]),
    ("expiry", "bench.expiry_bench", [], ["--members", "20000"]),
)
# Run only when named in --only: the soak takes over 25 minutes (10 per backend plus warm-up).
OPT_IN = (
    ("soak", "bench.soak_bench", ["--backend", "both", "--duration", "600"],
     ["--backend", "sqlite", "--duration", "10", "--calls", "50", "--mo-rate", "20",
      "--members", "3000", "--ramp", "5", "--warmup", "2", "--interval", "5"]),
    # Several server processes on one PostgreSQL (docs/scaling.md): three runs of a minute.
    ("scale", "bench.scale_bench", [],
     ["--processes", "1,2", "--members", "3000", "--duration", "3", "--warmup", "1",
      "--concurrency", "100"]),
)


def register(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="run the benchmarks and print one table")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--only", default="",
                        help="comma-separated: ivr,sms,core,expiry (the default: all four), "
                             "soak (only when named: it runs for 25 minutes), scale (only "
                             "when named: 1, 2 and 4 processes on PostgreSQL)")
    parser.add_argument("--json", action="store_true", help="all figures as JSON on stdout")
    parser.set_defaults(func=run_benchmarks)


def run_benchmarks(ctx) -> int:
    args = ctx.args if hasattr(ctx, "args") else ctx
    wanted = {s for s in args.only.split(",") if s} or {name for name, *_ in SUITES}
    results, failed = [], []
    started = time.monotonic()
    unknown = wanted - {name for name, *_ in SUITES + OPT_IN}
    if unknown:
        log(f"unknown bench(es): {', '.join(sorted(unknown))}")
        return 2
    for name, module, full, quick in SUITES + OPT_IN:
        if name not in wanted:
            continue
        log(f"== bench {name} ({module}) ==")
        command = [sys.executable, "-m", module, "--json"] + (quick if args.quick else full)
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
        if done.returncode != 0:
            failed.append(name)
            log(f"bench {name} failed with exit code {done.returncode}")
            continue
        results.append(json.loads(done.stdout))
    if args.json:
        print(json.dumps(results, ensure_ascii=False, indent=2))
    else:
        rows = [(r["bench"], f["name"], f["backend"], format_value(f["value"]), f["unit"],
                 f["note"]) for r in results for f in r["figures"]]
        print_table(("bench", "figure", "backend", "value", "unit", "note"), rows,
                    align="lllrll")
        env = results[0]["environment"] if results else {}
        print(f"\nmachine: {env.get('cpus')} CPUs, {env.get('system')} {env.get('machine')}, "
              f"Python {env.get('python')}, SQLite {env.get('sqlite')}; "
              f"{time.monotonic() - started:.0f} s in all")
    return 1 if failed else 0
