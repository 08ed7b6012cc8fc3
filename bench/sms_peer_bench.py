"""SMS round trips against a third-party SMSC, each next to its floor measured in the same run.

    .venv/bin/python -m bench.sms_peer_bench [--peers node,simulator] [--windows 10,50,200]
        [--sets balance,mix] [--members 10000] [--in-flight 50] [--rate 1000]
        [--duration 10] [--warmup 2] [--repeat 1] [--quick] [--json]

Peers: ``node`` is ``bench/smsc_node/smsc.js``, an SMSC on the npm ``smpp`` package (install
with ``npm ci --prefix bench/smsc_node``, which ``make bench`` does); ``simulator`` is our own
``harness.smsc_simulator`` (``bench.smsc_sim_peer``). Both are driven the same way (JSON lines,
see smsc.js): they inject MO deliver_sm from ``--members`` distinct members and time each MO
until the reply MT to that number is whole, sending a delivery receipt 100 ms after each
submit_sm.

For each peer and each window W, two ESMEs in turn bind to the same peer process:

* ``server``: the real SMS channel (``bench.sms_bench --role server``: ESME session, MO store
  and handler, outbox, receipts) on SQLite with the demo data plus ``--members`` members
  holding points, a fresh process on a fresh copy of one database built at the start for each
  keyword set (an overloaded open loop leaves a backlog); ``smpp.window`` = W;
* ``echo``: ``bench.echo_esme``, smpplib's bare blocking client answering every MO with one MT
  at once, window W: the floor.

and, for each keyword set (``balance``: spellings of JF; ``mix``: the read-only JF, DJ, MX, LB,
WL in turn), the peer runs a closed loop (``--in-flight`` MO outstanding) then an open loop
(``--rate`` MO/s offered). The node peer also keeps at most W deliver_sm unacknowledged.
Each server run is next to the echo run of the same set and window (``run_order``), and with
``--repeat N`` the pairs run N times, the echo first in every other one.

A number sending the same text within ``smpp.mo_dedupe_window_s`` is a redelivery, so each
member cycles through many spellings (case, full width, words, trailing punctuation: see
``keyword_texts``). The per-number MO limit is raised to ``--mo-rate-limit`` a minute (60):
10,000 members at 2,000 round trips/s send 12 a minute each, over the production 10; the check
itself runs at the same cost. Reported per peer, set and window: round trips/s, p50/p99,
the ESME process's CPU per round trip, open-loop p50/p99, and each as a ratio to the echo.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from statistics import median
from typing import Any

from bench.common import (
    BALANCE_SPELLINGS,
    Results,
    exit_on_sigterm,
    fresh_database,
    log,
    print_table,
    proc_cpu,
    scratch_dir,
)
from bench.sms_bench import build_database, msisdn

ROOT = Path(__file__).resolve().parent.parent
NODE_SMSC = ROOT / "bench" / "smsc_node" / "smsc.js"
SUFFIXES = ("", "?", "!", "？", "！", "。", "~")
MIX = {  # the read-only keywords of core.messaging.keywords, several spellings each
    "JF": BALANCE_SPELLINGS,
    "DJ": ("DJ", "dj", "Dj", "dJ", "等级", "ＤＪ", "TIER", "tier", "Tier"),
    "MX": ("MX", "mx", "Mx", "mX", "明细", "ＭＸ", "HISTORY", "history", "History"),
    "LB": ("LB", "lb", "Lb", "lB", "礼品", "ＬＢ", "GIFTS", "gifts", "REWARDS", "rewards"),
    "WL": ("WL", "wl", "Wl", "wL", "物流", "ＷＬ", "DELIVERY", "delivery", "Delivery"),
}


def keyword_texts(kind: str) -> list[str]:
    """The texts a member cycles through: ``balance`` (84 spellings of JF) or ``mix`` (the
    five read-only keywords in turn, 5 x 84 texts, no text twice)."""
    def variants(spellings: tuple[str, ...]) -> list[str]:
        return [s + suffix for suffix in SUFFIXES for s in spellings]

    if kind == "balance":
        return variants(BALANCE_SPELLINGS)
    per_kind = [variants(spellings) for spellings in MIX.values()]
    longest = max(len(v) for v in per_kind)
    seen: set[str] = set()
    texts = []
    for i in range(longest):
        for v in per_kind:
            if i < len(v) and v[i] not in seen:
                seen.add(v[i])
                texts.append(v[i])
    return texts


# --- processes ----------------------------------------------------------------------------


class Peer:
    """An SMSC process speaking the JSON-lines control protocol of smsc.js."""

    def __init__(self, name: str) -> None:
        self.name = name
        if name == "node":
            if not (NODE_SMSC.parent / "node_modules" / "smpp").is_dir():
                raise SystemExit("the node SMSC is not installed: npm ci --prefix bench/smsc_node")
            command = ["node", str(NODE_SMSC), "--port", "0", "--receipt-delay-ms", "100"]
        else:
            command = [sys.executable, "-m", "bench.smsc_sim_peer", "--receipt-delay-ms", "100"]
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=ROOT, env=_env())
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.port = self.wait("listening")["port"]

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.strip():
                self.events.put(json.loads(line))
        self.events.put(None)

    def send(self, **command: Any) -> None:
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def wait(self, event: str, timeout: float = 60, on: dict[str, Any] | None = None
             ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                got = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"{self.name} peer: no {event!r} in {timeout} s") from None
            if got is None:
                raise RuntimeError(f"{self.name} peer exited (waiting for {event!r})")
            if got["event"] == "error":
                raise RuntimeError(f"{self.name} peer: {got.get('message')}")
            if on and got["event"] in on:
                on[got["event"]]()
            if got["event"] == event:
                return got

    def members(self, numbers: list[str], texts: list[str]) -> None:
        self.send(cmd="members", numbers=numbers, texts=texts)
        self.wait("members")

    def run(self, esme_pid: int, **params: Any) -> dict[str, Any]:
        """One run; adds the ESME process's CPU seconds over the measured window."""
        cpu: list[tuple[float, float, float]] = []

        def sample() -> None:
            # The ESME process, its main (reactor) thread, and the peer itself.
            cpu.append((proc_cpu(esme_pid), proc_cpu(esme_pid, esme_pid),
                        proc_cpu(self.proc.pid)))

        self.send(cmd="run", **params)
        timeout = params["warmup_s"] + params["duration_s"] + params["drain_s"] + 60
        result = self.wait("result", timeout, on={"measuring": sample, "measured": sample})
        nan = float("nan")
        (result["esme_cpu_s"], result["esme_main_thread_cpu_s"],
         result["peer_cpu_s"]) = ([b - a for a, b in zip(*cpu, strict=True)]
                                  if len(cpu) == 2
                                  else [nan, nan, nan])
        return result

    def close(self) -> None:
        try:
            self.send(cmd="quit")
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT))


def start_esme(kind: str, peer: Peer, window: int, db_url: str, rate_limit: int
               ) -> subprocess.Popen:
    if kind == "server":
        command = [sys.executable, "-m", "bench.sms_bench", "--role", "server", "--db", db_url,
                   "--smsc-port", str(peer.port), "--window", str(window),
                   "--mo-rate-limit", str(rate_limit)]
        # Diagnostics for the server only (e.g. "--db-stats --profile /tmp/p.prof").
        command += os.environ.get("LOYALTY_BENCH_SERVER_ARGS", "").split()
    else:
        command = [sys.executable, "-m", "bench.echo_esme", "--port", str(peer.port),
                   "--window", str(window)]
    proc = subprocess.Popen(command, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL)
    try:
        peer.wait("bound", timeout=60)
    except BaseException:
        stop(proc)
        raise
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- the runs -----------------------------------------------------------------------------


def run_order(repeat: int, windows: list[int], sets: list[str], quick: bool
              ) -> list[tuple[int, int, list[str], str]]:
    """(repetition, window, keyword sets, ESME) in the order they run: each server run next to
    the echo run it is compared with (same window and set), the server first in even
    repetitions and the echo first in odd ones, so a machine that drifts one way during a
    pair does not favour the same side every time. A fresh ESME (and a fresh copy of the
    database) per keyword set: an open loop the server cannot keep up with leaves a backlog
    that would otherwise be measured as the next run's latency and CPU. --quick (a smoke run
    at a low rate) runs both sets on one ESME."""
    groups = [sets] if quick else [[kind] for kind in sets]
    return [(rep, window, kinds, esme) for rep in range(repeat) for window in windows
            for kinds in groups
            for esme in (("server", "echo") if rep % 2 == 0 else ("echo", "server"))]


def measure_peer(peer: Peer, args: argparse.Namespace, numbers: list[str], template: str,
                 workdir: str) -> list[dict[str, Any]]:
    """Every (window, ESME, keyword set, loop) of one peer, in ``run_order``; one row per
    run."""
    rows: list[dict[str, Any]] = []
    for rep, window, kinds, esme in run_order(args.repeat, args.windows, args.sets,
                                              args.quick):
        # A name of its own per repetition: a stale -wal file left by the last server on
        # the same name would be replayed into the fresh copy (a malformed database).
        db = os.path.join(workdir, f"{peer.name}-w{window}-{kinds[0]}-{rep}.sqlite3")
        if esme == "server":
            shutil.copyfile(template, db)
        proc = start_esme(esme, peer, window, f"sqlite:///{db}", args.mo_rate_limit)
        try:
            for kind in kinds:
                for row in measure_set(peer, proc.pid, esme, window, kind, numbers,
                                       args):
                    rows.append(dict(row, rep=rep))
        finally:
            stop(proc)
            try:
                peer.wait("unbound", timeout=15)
            except RuntimeError as exc:
                log(f"  {exc}")
            if esme == "server":
                for path in (db, db + "-wal", db + "-shm"):
                    if os.path.exists(path):
                        os.remove(path)
    return rows


def measure_set(peer: Peer, pid: int, esme: str, window: int, kind: str, numbers: list[str],
                args: argparse.Namespace) -> list[dict[str, Any]]:
    """The closed loop, then the open loop, of one keyword set against one bound ESME."""
    rows = []
    peer.members(numbers, keyword_texts(kind))
    for mode in ("closed", "open"):
        r = peer.run(pid, mode=mode, window=window, in_flight=args.in_flight, rate=args.rate,
                     warmup_s=args.warmup, duration_s=args.duration, drain_s=args.drain,
                     timeout_s=10)
        r.update(peer=peer.name, esme=esme, set=kind)
        rows.append(r)
        log(f"  {peer.name:9} w{window:<3} {esme:6} {kind:7} {mode:6} {r['per_s']:7,.0f}/s "
            f"p50 {_ms(r['p50_ms'])} p99 {_ms(r['p99_ms'])} ms, ESME CPU "
            f"{1e6 * r['esme_cpu_s'] / max(r['round_trips'], 1):5.0f} us/rt (main thread "
            f"{1e6 * r['esme_main_thread_cpu_s'] / max(r['round_trips'], 1):.0f}), peer "
            f"{1e6 * r['peer_cpu_s'] / max(r['round_trips'], 1):.0f} us/rt{_trouble(r)}; "
            f"load {os.getloadavg()[0]:.1f}")
    return rows


def _ms(value: float | None) -> str:
    return "   -" if value is None else f"{value:6.1f}"


def _trouble(r: dict[str, Any]) -> str:
    bad = {k: r.get(k) for k in ("lost", "mo_errors", "skipped") if r.get(k)}
    return " (" + ", ".join(f"{k} {v}" for k, v in bad.items()) + ")" if bad else ""


def add_figures(results: Results, rows: list[dict[str, Any]]) -> None:
    """Five figures per peer, set and window (the server's), each with its floor in the note.

    With ``--repeat`` N, each repetition pairs a server run with the echo run next to it;
    a figure is the median over the repetitions (the ratio: the median of the pairs' ratios),
    the note lists every pair's ratio. This machine's speed drifts by up to a third between
    runs a minute apart, which a single pair cannot tell from a change of ours."""
    by: dict[tuple, list[dict[str, Any]]] = {}
    for r in sorted(rows, key=lambda r: r.get("rep", 0)):
        by.setdefault((r["peer"], r["window"], r["esme"], r["set"], r["mode"]), []).append(r)
    for (peer, window, esme, kind, mode), servers in by.items():
        if esme != "server" or mode != "closed":
            continue
        echoes = by.get((peer, window, "echo", kind, "closed"), [])
        so = by.get((peer, window, "server", kind, "open"), [])
        eo = by.get((peer, window, "echo", kind, "open"), [])
        name = f"sms_peer.{peer}.{kind}.w{window}"
        rate = median(s["per_s"] for s in servers)
        trouble = "".join(_trouble(s) for s in servers)
        note = f"{servers[0]['in_flight']} in flight"
        if echoes:
            ratios = [s["per_s"] / max(e["per_s"], 1e-9) for s, e in zip(servers, echoes,
                                                                          strict=False)]
            note += (f"; echo {median(e['per_s'] for e in echoes):,.0f}/s, ratio "
                     f"{median(ratios):.2f}")
            if len(ratios) > 1:
                note += f" (median of {', '.join(f'{x:.2f}' for x in ratios)})"
        results.add(f"{name}.round_trips_per_s", "sqlite", round(rate), "1/s", note + trouble)
        note = f"p50 {_ms(median_of(servers, 'p50_ms')).strip()}"
        if echoes:
            note += (f"; echo p50/p99 {_ms(median_of(echoes, 'p50_ms')).strip()}"
                     f"/{_ms(median_of(echoes, 'p99_ms')).strip()} ms")
        results.add(f"{name}.p99_ms", "sqlite", median_of(servers, "p99_ms") or float("nan"),
                    "ms", note)
        cpu_s = median(cpu_per_round_trip(s) for s in servers)
        note = "ESME process"
        if echoes:
            cpu_e = median(cpu_per_round_trip(e) for e in echoes)
            note += f"; echo {cpu_e:.0f} us, ratio {cpu_s / max(cpu_e, 1e-9):.1f}"
        results.add(f"{name}.cpu_per_round_trip_us", "sqlite", round(cpu_s), "us", note)
        if so:
            note = (f"{so[0]['rate_offered']:,.0f}/s offered, p50 "
                    f"{_ms(median_of(so, 'p50_ms')).strip()}")
            if eo:
                note += (f"; echo p50/p99 {_ms(median_of(eo, 'p50_ms')).strip()}/"
                         f"{_ms(median_of(eo, 'p99_ms')).strip()} ms")
            results.add(f"{name}.open_loop.p99_ms", "sqlite",
                        median_of(so, "p99_ms") or float("nan"), "ms",
                        note + "".join(_trouble(r) for r in so))
            # What a moderate load costs: a server whose rounds stay small at this rate
            # uses as much CPU as at its limit (sms.lane's round_wait_s is about this).
            note = f"{so[0]['rate_offered']:,.0f}/s offered; ESME process"
            if eo:
                note += f"; echo {median(cpu_per_round_trip(e) for e in eo):.0f} us"
            results.add(f"{name}.open_loop.cpu_per_round_trip_us", "sqlite",
                        round(median(cpu_per_round_trip(r) for r in so)), "us", note)


def cpu_per_round_trip(r: dict[str, Any]) -> float:
    return 1e6 * r["esme_cpu_s"] / max(r["round_trips"], 1)


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return median(values) if values else None


def summary_table(rows: list[dict[str, Any]], file: Any = None) -> None:
    """Every run, one line each (stderr by default): for the docs and for reading."""
    table = []
    for r in rows:
        table.append((r["peer"], r["window"], r["set"], r["esme"], r["mode"],
                      f"{r['per_s']:,.0f}", _ms(r["p50_ms"]).strip(), _ms(r["p99_ms"]).strip(),
                      f"{cpu_per_round_trip(r):.0f}",
                      _trouble(r).strip(" ()") or "-"))
    print_table(("peer", "window", "set", "ESME", "loop", "round trips/s", "p50 ms", "p99 ms",
                 "ESME CPU us/rt", "trouble"), table, file=file or sys.stderr,
                align="lrllrrrrrl")


def run(args: argparse.Namespace) -> int:
    results = Results("sms_peer", params=dict(
        peers=args.peers, windows=args.windows, sets=args.sets, members=args.members,
        in_flight=args.in_flight, rate=args.rate, duration_s=args.duration,
        warmup_s=args.warmup, repeat=args.repeat, mo_rate_limit=args.mo_rate_limit,
        receipt_delay_ms=100,
        load_average_at_start=[round(x, 2) for x in os.getloadavg()]))
    numbers = [msisdn(i) for i in range(1, args.members + 1)]
    random.Random(7).shuffle(numbers)
    rows: list[dict[str, Any]] = []
    with scratch_dir() as workdir, fresh_database("sqlite", workdir=workdir) as url:
        log(f"building the database: demo data + {args.members:,} members")
        build_database(url, args.members)
        template = url.removeprefix("sqlite:///")
        for name in args.peers:
            log(f"peer {name}")
            peer = Peer(name)
            try:
                rows += measure_peer(peer, args, numbers, template, workdir)
            finally:
                peer.close()
    add_figures(results, rows)
    summary_table(rows)
    results.params["runs"] = rows
    results.report(args.json)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.sms_peer_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--peers", default="node,simulator")
    p.add_argument("--windows", default="10,50,200")
    p.add_argument("--sets", default="balance,mix")
    p.add_argument("--members", type=int, default=10000)
    p.add_argument("--in-flight", type=int, default=50)
    p.add_argument("--rate", type=float, default=1000.0, help="offered MO/s, open loop")
    p.add_argument("--duration", type=float, default=10.0, help="seconds measured per run")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    p.add_argument("--drain", type=float, default=3.0,
                   help="seconds at most for the replies in flight after a run")
    p.add_argument("--mo-rate-limit", type=int, default=60,
                   help="the server's smpp.mo_rate_limit (per number a minute)")
    p.add_argument("--repeat", type=int, default=1,
                   help="server and echo runs this many times in turn; figures are medians")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: 2,000 members, window 50, 1 s runs, 200 MO/s open loop, "
                        "one ESME for both keyword sets")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.members = min(args.members, 2000)
        args.windows = "50" if args.windows == "10,50,200" else args.windows
        args.duration, args.warmup, args.drain = 1.0, 0.3, 1.0
        args.rate = min(args.rate, 200.0)
    args.peers = [x for x in args.peers.split(",") if x]
    args.windows = [int(x) for x in str(args.windows).split(",") if x]
    args.sets = [x for x in args.sets.split(",") if x]
    if set(args.peers) - {"node", "simulator"} or set(args.sets) - {"balance", "mix"}:
        p.error("peers: node, simulator; sets: balance, mix")
    return args


def main(argv: list[str] | None = None) -> int:
    exit_on_sigterm()
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
