"""Soak: both channels of one composed server under steady mixed load, for minutes on end.

    .venv/bin/python -m bench.soak_bench [--backend sqlite|postgresql|both] [--duration 600]
        [--calls 1000] [--mo-rate 500] [--members 30000] [--hold 4] [--keys 2T3TH]
        [--ramp 120] [--warmup 30] [--interval 30] [--json]

The server is a child process built the way production builds it: ``twistd.tac``'s
``build_server(config, reactor)`` (FastAGI, the SMPP ESME, the ops endpoint and the database
service in one tree) and ``tune_gc()`` as the tac calls it, on a throw-away database holding
the demo data plus the IVR bench's and the SMS bench's members (``--members`` of each). The
configuration is the default except: ephemeral ports, scheduled jobs off, and the SMPP limits
sms_bench raises (``max_submit_rate``, ``window``) so the SMSC contract is not what is
measured. The per-number MO rate limit stays on.

This process plays Asterisk and the SMSC at once:

- ``--calls`` virtual callers keep that many calls up at all times. Each calls in as one
  member, listens and presses ``--keys`` like ivr_bench's callers (``--hold`` s +-50 % at
  every prompt and input), hangs up, and at once calls again as the next member. Callers
  start evenly over ``--ramp`` seconds.
- An SMSC simulator (sms_bench's, which times each MO until the reply MT to that number)
  offers ``--mo-rate`` balance requests per second, open loop, each from a member with no MO
  in flight. Members are reused in turn, each cycling through 12 spellings (``JF``, ``jf``,
  ``积分``, ``ＪＦ``, ``BALANCE``...): with ``--members`` >= rate * 60 / 8 none comes near the
  10-a-minute limit, and none sends the same text twice within the server's redelivery
  dedupe window (``smpp.mo_dedupe_window_s``), which would rightly get no second answer.

After ``--ramp`` + ``--warmup`` seconds the measured window of ``--duration`` seconds starts:
the server's resident size (RSS) then is "start", it is sampled every second (max) and the
one at the end of the window is "end". A progress line goes to stderr every ``--interval``
seconds. Then the load stops: MO in flight get their replies, callers hang up at their next
prompt; RSS is read once more ("after drain") and the server is stopped with SIGTERM. The
server logs as the tac sets it up (info level, to a scratch file) and its warnings and errors
come to this process's stderr.

Errors, counted over the whole run (warm-up and drain included); exit code 0 only if none:

- ``calls.failed``: ivr_bench's check (the call timed out or the server ended it);
  ``calls.wrong_prompts``: the caller did not hear what its keys ask for (for the default
  keys the balance and the history) or heard the system-error prompt;
  ``calls.not_connected``: the call could not be placed;
- ``mo.not_acked``: a deliver_sm answered with a status other than 0, or never answered;
  ``mo.no_reply``: no reply MT within ``--reply-timeout`` s; ``mo.not_offered``: an MO due
  by the schedule found every member with one in flight (the load was not sustained);
- ``mt.wrong_text``: a reply that is not the balance answer (e.g. the rate-limit notice);
  ``mt.unexpected``: an MT nobody waited for (a duplicate reply);
- ``smsc.rejected_submits``, ``smsc.receipts_refused``, ``smsc.nacks``, ``smsc.rebinds``:
  what the SMSC side saw go wrong on the SMPP session;
- ``server.log_errors``: server log events at error or critical level; ``server.died``,
  ``server.exit``: the server process ended on its own, or not cleanly when asked;
  ``server.calls_active_after_drain``: the server still counts calls after all ended;
- ``driver.log_errors``: error-level events in this process (a simulator crash would hide
  what the server did).

Also reported: calls completed and held, MO offered and answered per second, MO round trip
p50/p99/max, the server's AGI think time p99 (from its /metrics histogram), and CPU as % of
one core: the server (reactor thread and database threads apart), this driver, PostgreSQL's
processes and the whole machine, so a shortfall can be placed on the server, the driver or a
machine shared with other work (2 cores here for everything).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import math
import os
import runpy
import signal
import sys
import time
import warnings
from collections import Counter, deque
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from bench import ivr_bench, sms_bench
from bench.common import (
    BALANCE_SPELLINGS,
    Results,
    exit_on_sigterm,
    fresh_database,
    latency_ms,
    log,
    populate,
    proc_cpu,
    programme_today,
    raise_fd_limit,
    react,
    rss_bytes,
    scratch_dir,
)

ROOT = Path(__file__).resolve().parent.parent
TAC = ROOT / "twistd.tac"
MIB = 2**20
# Each member's balance requests cycle through BALANCE_SPELLINGS: with members * 12 >= rate *
# smpp.mo_dedupe_window_s no (number, text) pair repeats within the window (a repeat would be
# taken for an SMSC redelivery and answered once).
BALANCE_REPLY = ("【积分查询】", "Loyalty: you have")  # how the balance reply opens, zh / en
# Prompts a caller must hear for its keys (only for key scripts we know the answer to), and
# prompts no caller may hear.
EXPECTED_PROMPTS = {"2T3TH": ("bal_is", "hist_latest")}
FORBIDDEN_PROMPTS = frozenset({"err_system"})
SHOWN = 10  # examples of each kind of problem printed; the rest are only counted


# --- the server process --------------------------------------------------------------------


def level_lines(stream: Any) -> Callable[[dict], None]:
    """A log observer writing warn and above as ``LOG <level> <namespace>: <text>`` lines, a
    traceback indented under its line, so the driver can count levels without parsing
    Twisted's text format (legacy events there carry no level)."""
    from twisted.logger import LogLevel, formatEvent

    shown = (LogLevel.warn, LogLevel.error, LogLevel.critical)

    def observe(event: dict) -> None:
        level = event.get("log_level", LogLevel.info)
        if level not in shown:
            return
        lines = [f"LOG {level.name} {event.get('log_namespace', '-')}: {formatEvent(event)}"]
        failure = event.get("log_failure")
        if failure is not None:
            lines += ["    " + line for line in failure.getTraceback().splitlines()]
        stream.write("\n".join(lines) + "\n")
        stream.flush()

    return observe


def serve(args: argparse.Namespace) -> None:
    """The composed server; prints ``READY <agi port> <ops port>``; SIGTERM stops it."""
    from twisted.internet import defer, reactor
    from twisted.logger import globalLogBeginner

    from core.config import load_config
    from ivr.server import tune_gc

    raise_fd_limit()
    config = (load_config(environ={})
              .replace("database", url=args.serve)
              .replace("fastagi", host="127.0.0.1", port=0, max_calls=args.max_calls)
              .replace("ops", host="127.0.0.1", port=0)
              .replace("smpp", host="127.0.0.1", port=args.smsc_port, **sms_bench.BENCH_SMPP)
              .replace("jobs", enabled=False))
    observers = [level_lines(sys.stderr)]
    if args.log_file:
        # The log twistd.tac installs, at the configured level (info: two lines per call), so
        # its cost is in the figures as in production; to a file, as under systemd.
        from ops.logs import log_observer

        observers.append(log_observer(config.replace("logging", file=args.log_file).logging))
    globalLogBeginner.beginLoggingTo(observers, redirectStandardIO=False)
    top = runpy.run_path(str(TAC), run_name="loyalty_tac")["build_server"](config, reactor)
    tune_gc()  # as twistd.tac does once the tree is built

    async def announce() -> None:
        agi = (await top.fastagi.whenListening()).getHost().port
        ops = (await top.ops.whenListening()).getHost().port
        print(f"READY {agi} {ops}", flush=True)

    def start() -> None:
        top.startService()
        defer.ensureDeferred(announce()).addErrback(
            lambda f: (print(f"LOG critical soak: cannot start: {f.getErrorMessage()}",
                             file=sys.stderr, flush=True), reactor.stop()))

    if args.trace_memory:
        trace_memory(reactor)
    reactor.callWhenRunning(start)
    # As under twistd: SIGTERM stops the reactor, which first stops the tree (channels, then
    # the database they write to).
    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
    reactor.run()


def trace_memory(reactor: Any, top: int = 25) -> None:
    """Diagnosis of a growing RSS: trace Python allocations from the start; SIGUSR1 takes the
    baseline snapshot, SIGUSR2 prints (``MEM`` lines on stderr) the source lines whose live
    allocations grew most since then. Tracing slows the server a lot: use a lighter load."""
    import tracemalloc

    tracemalloc.start()
    box: dict[str, Any] = {}
    noise = [tracemalloc.Filter(False, tracemalloc.__file__),
             tracemalloc.Filter(False, "<frozen importlib._bootstrap*>")]

    def mark() -> None:
        gc.collect()
        box["start"] = tracemalloc.take_snapshot().filter_traces(noise)
        print(f"MEM baseline: {tracemalloc.get_traced_memory()[0] / MIB:.1f} MiB traced",
              file=sys.stderr, flush=True)

    def report() -> None:
        if "start" not in box:
            return
        # Garbage in reference cycles waits for the collector (tune_gc makes it wait long):
        # count it, then collect, so the lines below are what is really still referenced.
        before = tracemalloc.get_traced_memory()[0]
        unreachable = gc.collect()
        print(f"MEM {before / MIB:.1f} MiB traced before a full collection, which freed "
              f"{unreachable} unreachable objects", file=sys.stderr, flush=True)
        now = tracemalloc.take_snapshot().filter_traces(noise)
        diffs = now.compare_to(box["start"], "lineno")
        grown = sum(d.size_diff for d in diffs)
        print(f"MEM now: {tracemalloc.get_traced_memory()[0] / MIB:.1f} MiB traced, "
              f"{grown / MIB:+.2f} MiB since the baseline; top lines:", file=sys.stderr)
        for d in diffs[:top]:
            frame = d.traceback[0]
            print(f"MEM {d.size_diff / 1024:+9.1f} KiB {d.count_diff:+8d} blocks  "
                  f"{frame.filename}:{frame.lineno}", file=sys.stderr)
        sys.stderr.flush()

    signal.signal(signal.SIGUSR1, lambda *_: reactor.callFromThread(mark))
    signal.signal(signal.SIGUSR2, lambda *_: reactor.callFromThread(report))


# --- the driver: server process handle --------------------------------------------------------


class ServerProcess:
    """The server child: its readiness, log levels seen, death."""

    def __init__(self, label: str, errors: Counter) -> None:
        from twisted.internet import defer

        self.label, self.errors = label, errors
        self.ready: defer.Deferred = defer.Deferred()
        self.ended: defer.Deferred = defer.Deferred()
        self.exit_code: int | None = None
        self.signal: int | None = None
        self.warnings = 0
        self.other_lines = 0
        self.printed: Counter = Counter()
        self.transport: Any = None

    def start(self, reactor: Any, command: list[str]) -> None:
        from twisted.internet import protocol

        owner = self

        class Proto(protocol.ProcessProtocol):
            def __init__(self) -> None:
                self.buffers = {1: b"", 2: b""}

            def childDataReceived(self, fd: int, data: bytes) -> None:
                lines = (self.buffers[fd] + data).split(b"\n")
                self.buffers[fd] = lines.pop()
                for raw in lines:
                    owner.line(fd, raw.decode("utf-8", "replace"))

            def processEnded(self, reason: Any) -> None:
                owner.exit_code = reason.value.exitCode
                owner.signal = getattr(reason.value, "signal", None)
                if not owner.ready.called:
                    owner.ready.errback(RuntimeError(
                        f"the server exited (code {owner.exit_code}) before it was ready"))
                owner.ended.callback(owner.exit_code)

        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.transport = reactor.spawnProcess(Proto(), command[0], command, env=env,
                                              path=str(ROOT))

    def line(self, fd: int, line: str) -> None:
        if fd == 1:
            parts = line.split()
            if parts[:1] == ["READY"] and not self.ready.called:
                self.ready.callback((int(parts[1]), int(parts[2])))
            return
        if line.startswith("MEM "):  # --trace-memory's report: always shown, not a problem
            log(f"  server[{self.label}] {line}")
            return
        if line.startswith("    ") and self._last is not None:
            kind = self._last  # the traceback under the last LOG line
        else:
            if line.startswith("LOG "):
                kind = "error" if line.split(" ", 2)[1] in ("error", "critical") else "warn"
            else:
                kind = "other"  # e.g. a Python warning or an interpreter traceback
            if kind == "error":
                self.errors["server.log_errors"] += 1
            elif kind == "warn":
                self.warnings += 1
            else:
                self.other_lines += 1
            self._last = kind
            self.printed[kind] += 1
            if self.printed[kind] == SHOWN + 1:
                log(f"  server[{self.label}] (further {kind} lines only counted)")
        if self.printed[kind] <= SHOWN:  # a few events with their tracebacks, never a flood
            log(f"  server[{self.label}] {line}")

    _last: str | None = None

    @property
    def running(self) -> bool:
        return self.exit_code is None and not self.ended.called

    def terminate(self) -> None:
        if self.running:
            self.transport.signalProcess("TERM")

    def kill(self) -> None:
        if self.running:
            self.transport.signalProcess("KILL")


# --- the driver: load ----------------------------------------------------------------------


class Load:
    """The callers and the MO stream against one server, and every check on what comes back."""

    def __init__(self, reactor: Any, args: argparse.Namespace, agi_port: int, sim: Any,
                 errors: Counter) -> None:
        self.reactor, self.args, self.agi_port, self.sim = reactor, args, agi_port, sim
        self.errors = errors
        self.examples: Counter = Counter()
        # -- calls
        self.calling = True
        self.ivr_free = deque(ivr_bench.member(i) for i in range(args.members))
        self.live = 0
        self.calls_done = 0
        self.call_ids = itertools.count(1)
        self.expected = frozenset(EXPECTED_PROMPTS.get(args.keys.upper(), ()))
        self.callers: list[Any] = []
        # -- MO
        numbers = [sms_bench.msisdn(i) for i in range(1, args.members + 1)]
        self.sms_free = deque(numbers)
        self.uses: Counter = Counter()  # MO sent per number: picks its next text
        self.pending: deque[tuple[float, str]] = deque()  # (sent at, number), in send order
        self.timed_out: set[str] = set()
        self.mo_sent = 0
        self.mo_due = 0
        self.answered = 0
        self.mt_first_parts = 0
        self.late = 0
        self._mo_start = 0.0
        self._ticker: Any = None
        sim.on_reply = self._replied
        bench_accept = sim.accept

        def accept(fields: dict[str, Any], message_id: str) -> Any:
            # sms_bench's SMSC times the reply and calls on_reply; here the text is checked too
            # (the rate-limit notice or a system error would also "arrive").
            rec = bench_accept(fields, message_id)
            if rec.concat is None or rec.concat.seq == 1:
                self.mt_first_parts += 1
                if rec.destination in self.timed_out:
                    self.late += 1
                if not rec.text.startswith(BALANCE_REPLY):
                    self.problem("mt.wrong_text", repr(rec.text[:80]))
            return rec

        sim.accept = accept

    def problem(self, kind: str, detail: str = "") -> None:
        self.errors[kind] += 1
        self.examples[kind] += 1
        if self.examples[kind] <= SHOWN:
            log(f"  ERROR {kind}: {detail}")

    # -- calls ----------------------------------------------------------------------------

    def start_callers(self) -> None:
        from twisted.internet import defer

        self.callers = [defer.ensureDeferred(self._caller(k)) for k in range(self.args.calls)]

    async def _caller(self, k: int) -> None:
        from harness.simulator import simulate_call

        args = self.args
        await self.sleep(args.ramp * k / max(args.calls, 1))
        while self.calling:
            number = self.ivr_free.popleft()
            self.live += 1
            try:
                call = await simulate_call(
                    "127.0.0.1", self.agi_port, callerid=number, reactor=self.reactor,
                    key_source=self.keys(), timeout_s=args.call_timeout,
                    uniqueid=f"soak-{os.getpid()}-{next(self.call_ids)}")
            except Exception as e:  # noqa: BLE001 - any failure to place a call is counted
                self.live -= 1
                self.problem("calls.not_connected", repr(e))
                await self.sleep(1.0)  # a dead server must not turn this into a busy loop
            else:
                self.live -= 1
                self.check_call(call)
            finally:
                self.ivr_free.append(number)
            self.calls_done += 1

    def keys(self) -> Any:
        """ivr_bench's paced caller, who hangs up at the next prompt or input once the load
        stops (a call runs about two minutes; the drain need not wait for every one)."""
        keys = ivr_bench.paced_keys(self.args.keys, self.args.hold, self.reactor)
        paced = keys.ensure

        async def ensure(hint: str, escape_digits: str = "") -> None:
            await paced(hint, escape_digits)
            if not self.calling and keys.peek() not in (None, "H"):
                while keys.pop() is not None:
                    pass
                keys.push("H")

        keys.ensure = ensure
        return keys

    def check_call(self, call: Any) -> None:
        if ivr_bench.call_failed(call):
            self.problem("calls.failed", self._tail(call))
            return
        heard = {e.value.rsplit("/", 1)[-1] for e in call.transcript if e.kind == "prompt"}
        # A call cut short by the drain need not have heard everything, only nothing wrong.
        expected = self.expected if self.calling else frozenset()
        if heard & FORBIDDEN_PROMPTS or not expected <= heard:
            self.problem("calls.wrong_prompts", self._tail(call))

    @staticmethod
    def _tail(call: Any) -> str:
        lines = call.render().splitlines()
        return (f"{call.uniqueid} hung up by {call.hung_up_by}, timed out {call.timed_out}: "
                + " | ".join(lines[-6:]))

    # -- MO -------------------------------------------------------------------------------

    def start_mo(self) -> None:
        from twisted.internet import task

        self._mo_start = time.perf_counter()
        self._ticker = task.LoopingCall(self._tick)
        self._ticker.clock = self.reactor
        self._ticker.start(0.01)  # 10 ms: smooth enough, and cheap for the driver

    def stop_mo(self) -> None:
        if self._ticker is not None and self._ticker.running:
            self._ticker.stop()

    def _tick(self) -> None:
        due = int((time.perf_counter() - self._mo_start) * self.args.mo_rate) - self.mo_due
        for _ in range(max(0, due)):
            self.mo_due += 1
            if not self.sms_free:
                self.problem("mo.not_offered", "every member has an MO in flight")
                continue
            self._send(self.sms_free.popleft())

    def _send(self, number: str) -> None:
        # Not sms_bench's BenchSMSC.send: its status callbacks do not know the number, and
        # an MO refused here must not be counted again as unanswered.
        sent_at = time.perf_counter()
        self.sim.sent.setdefault(number, deque()).append(sent_at)  # BenchSMSC times from here
        self.pending.append((sent_at, number))
        self.mo_sent += 1
        self.uses[number] += 1
        text = BALANCE_SPELLINGS[self.uses[number] % len(BALANCE_SPELLINGS)]
        self.sim.inject_mo(number, text).addCallbacks(
            self._acked, self._lost, callbackArgs=(number, sent_at),
            errbackArgs=(number, sent_at))

    def _acked(self, status: int, number: str, sent_at: float) -> None:
        if status:
            self._withdraw(number, sent_at)
            self.problem("mo.not_acked", f"deliver_sm_resp status 0x{status:x}")

    def _lost(self, failure: Any, number: str, sent_at: float) -> None:
        self._withdraw(number, sent_at)
        self.problem("mo.not_acked", failure.getErrorMessage())

    def _withdraw(self, number: str, sent_at: float) -> None:
        queue = self.sim.sent.get(number)
        if queue and queue[0] == sent_at:
            queue.popleft()
        self.timed_out.add(number)  # never reused: a late reply would be misattributed

    def _replied(self, number: str) -> None:
        self.answered += 1
        self.sms_free.append(number)

    def in_flight(self) -> int:
        return sum(1 for _, number in self.pending if self._waiting(number))

    def _waiting(self, number: str) -> bool:
        return bool(self.sim.sent.get(number))

    def expire(self, older_than: float) -> None:
        """Count the MO sent more than ``older_than`` s ago and still unanswered."""
        now = time.perf_counter()
        while self.pending and now - self.pending[0][0] > older_than:
            sent_at, number = self.pending.popleft()
            queue = self.sim.sent.get(number)
            if queue and queue[0] == sent_at:
                queue.popleft()
                self.timed_out.add(number)
                self.problem("mo.no_reply", f"no reply within {older_than:g} s")

    def harvest_smsc(self) -> None:
        """Count what the simulator recorded, then drop its records: over minutes they would
        grow this process (it keeps every submit, receipt and PDU name)."""
        sim = self.sim
        for status in sim.submit_statuses:
            if status:
                self.problem("smsc.rejected_submits", f"submit_sm answered 0x{status:x}")
        for message_id, status in sim.receipts_sent:
            if status:
                self.problem("smsc.receipts_refused", f"receipt {message_id}: 0x{status:x}")
        for status in sim.nacks_received:
            self.problem("smsc.nacks", f"generic_nack 0x{status:x}")
        if sim.binds > 1:
            for _ in range(sim.binds - 1):
                self.problem("smsc.rebinds", "the ESME bound again")
            sim.binds = 1
        for records in (sim.submit_statuses, sim.receipts_sent, sim.nacks_received,
                        sim.submit_times, sim.received, sim.mo_statuses):
            records.clear()
        sim._ids.clear()  # only read for receipt_id_style other than "same"

    async def sleep(self, seconds: float) -> None:
        from twisted.internet import task

        await task.deferLater(self.reactor, seconds, lambda: None)


# --- the driver: metrics ------------------------------------------------------------------


async def fetch_metrics(reactor: Any, port: int) -> dict[tuple[str, tuple], float]:
    """The server's /metrics as {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families
    from twisted.web.client import Agent, readBody

    response = await Agent(reactor).request(b"GET", f"http://127.0.0.1:{port}/metrics".encode())
    text = (await readBody(response)).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def metric(snapshot: dict, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in snapshot.items()
               if n == name and all(dict(ls).get(k) == w for k, w in labels.items()))


def think_quantile(before: dict, after: dict, q: float) -> tuple[float, float]:
    """(q-quantile in ms, count) of the AGI think-time histogram between two snapshots,
    interpolated within its bucket as Prometheus's histogram_quantile does."""
    name = "loyalty_agi_think_seconds_bucket"
    buckets = sorted((float(dict(ls)["le"]), v - before.get((n, ls), 0.0))
                     for (n, ls), v in after.items() if n == name)
    if not buckets or buckets[-1][1] <= 0:
        return math.nan, 0.0
    total = buckets[-1][1]
    rank, lower, below = q * total, 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower * 1000, total
            inside = count - below
            share = (rank - below) / inside if inside else 1.0
            return 1000 * (lower + (upper - lower) * share), total
        lower, below = upper, count
    return math.nan, total


# --- the driver: one soak --------------------------------------------------------------------


def rss_text(pid: int) -> str:
    """The process's RSS and how much of it is anonymous (heap: Python objects, malloc arenas,
    SQLite's page cache) or file-backed (mapped libraries, SQLite's shared WAL index), from
    /proc/PID/status: a growing heap and a growing file mapping have different causes."""
    parts = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                parts[key] = int(value.split()[0]) / 1024  # kB -> MiB
    mib = {k: parts.get(k, math.nan) for k in ("VmRSS", "RssAnon", "RssFile", "RssShmem")}
    return (f"RSS {mib['VmRSS']:.1f} MiB (anon {mib['RssAnon']:.1f}, file {mib['RssFile']:.1f}"
            f", shmem {mib['RssShmem']:.1f})")


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores (Linux /proc/stat)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - idle) / hz, sum(ticks) / hz


def postgres_cpu() -> float:
    """CPU seconds used so far by the PostgreSQL processes running now (every database's:
    other jobs on the machine count too)."""
    total = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/comm") as f:
                if f.read().strip() != "postgres":
                    continue
        except OSError:
            continue
        used = proc_cpu(int(entry.name))
        if not math.isnan(used):
            total += used
    return total


class Sampler:
    """CPU use between marks, in % of one core: the server (its main thread runs the reactor,
    the others are the database pool), this driver, PostgreSQL's processes, and the whole
    machine (all cores, other people's processes included), to tell which of them ran out."""

    def __init__(self, server_pid: int, postgres: bool = False) -> None:
        self.pid, self.postgres = server_pid, postgres
        self.mark()

    def _now(self) -> dict[str, float]:
        busy, _ = machine_cpu()
        now = dict(t=time.perf_counter(), server=proc_cpu(self.pid),
                   reactor=proc_cpu(self.pid, self.pid), driver=time.process_time(),
                   machine=busy)
        if self.postgres:
            now["postgres"] = postgres_cpu()
        return now

    def mark(self) -> None:
        self.start = self._now()

    def since(self) -> dict[str, float]:
        now = self._now()
        wall = max(now["t"] - self.start["t"], 1e-9)
        rates = {k: 100 * (now[k] - self.start[k]) / wall for k in now if k != "t"}
        rates["db"] = rates["server"] - rates["reactor"]
        rates["wall"] = wall
        return rates


def cpu_text(c: dict[str, float]) -> str:
    pg = f", postgres {c['postgres']:.0f}" if "postgres" in c else ""
    return (f"CPU % of a core: server {c['server']:.0f} (reactor {c['reactor']:.0f}, db "
            f"{c['db']:.0f}), driver {c['driver']:.0f}{pg}, machine {c['machine']:.0f} of "
            f"{100 * (os.cpu_count() or 1)}")


async def soak(reactor: Any, backend: str, url: str, args: argparse.Namespace,
               results: Results, workdir: str) -> int:
    """One soak on one database; adds its figures to ``results``; returns its error count."""
    errors: Counter = Counter()
    sim = sms_bench.make_smsc(receipts=True)
    smsc_port = sim.listen(0).getHost().port
    server = ServerProcess(backend, errors)
    server.start(reactor, [sys.executable, "-m", "bench.soak_bench", "--serve", url,
                           "--smsc-port", str(smsc_port),
                           "--max-calls", str(max(3000, args.calls + 100)),
                           "--log-file", os.path.join(workdir, f"server-{backend}.log")]
                 + (["--trace-memory"] if args.trace_memory else []))
    load: Load | None = None
    figures: dict[str, Any] = {}
    try:
        agi_port, ops_port = await server.ready.addTimeout(120, reactor)
        await sim.wait_for(lambda: sim.session is not None, timeout=30)
        log(f"[{backend}] server pid {server.transport.pid} up (FastAGI :{agi_port}, ops "
            f":{ops_port}), bound to the SMSC; {args.calls} callers ramping over "
            f"{args.ramp:g} s, {args.mo_rate:g} MO/s")
        load = Load(reactor, args, agi_port, sim, errors)
        load.start_callers()
        load.start_mo()
        figures = await run_window(reactor, backend, args, load, server, ops_port)
        await drain(reactor, backend, args, load, server, ops_port, figures)
    except Exception as e:  # noqa: BLE001 - the soak's failure, reported like any error
        errors["server.died" if not server.running or load is None else "driver.crashed"] += 1
        log(f"  ERROR: [{backend}] the soak stopped: {e!r}")
    finally:
        await shut_down(reactor, load, server, sim, errors)
    if load is not None:
        unexpected = load.mt_first_parts - load.answered - load.late
        if unexpected > 0:
            errors["mt.unexpected"] += unexpected
    report(backend, args, server, figures, errors, results)
    total = sum(errors.values())
    log(f"[{backend}] {'PASS' if total == 0 else 'FAIL'}: {total} error(s)"
        + (": " + ", ".join(f"{k}={v}" for k, v in sorted(errors.items()) if v) if total else ""))
    return total


async def shut_down(reactor: Any, load: Load | None, server: ServerProcess, sim: Any,
                    errors: Counter) -> None:
    """Stop the load, the server (SIGTERM, as an operator would) and the SMSC."""
    from twisted.internet import defer

    if load is not None:
        load.calling = False
        load.stop_mo()
    await stop_server(reactor, server, errors)
    await sim.stop()
    if load is not None and load.callers:
        # Calls still up when the server stopped end now (closed connections).
        await defer.DeferredList(load.callers, consumeErrors=True)


async def run_window(reactor: Any, backend: str, args: argparse.Namespace, load: Load,
                     server: ServerProcess, ops_port: int) -> dict[str, Any]:
    """Warm-up, then the measured window; returns what was measured."""
    pid = server.transport.pid
    pg = backend == "postgresql"
    sampler = Sampler(pid, pg)
    started = time.perf_counter()
    warm_until = started + args.ramp + args.warmup
    window: dict[str, Any] = {}
    last = dict(calls=0, sent=0, answered=0, lat=0)
    live_min, live_max = math.inf, 0
    next_line = started + args.interval
    end = math.inf

    def progress(phase: str) -> None:
        cpu = sampler.since()
        wall = cpu["wall"]
        lat = load.sim.latencies[last["lat"]:]
        p99 = latency_ms(lat)["p99"] if lat else math.nan
        log(f"[{backend} {phase} {time.perf_counter() - started:4.0f}s] calls live "
            f"{load.live} ({(load.calls_done - last['calls']) / wall:.1f}/s ended); MO "
            f"{(load.mo_sent - last['sent']) / wall:.0f}/s sent, "
            f"{(load.answered - last['answered']) / wall:.0f}/s answered, p99 {p99:.0f} ms, "
            f"{load.in_flight()} in flight; server {rss_text(pid)}; "
            f"{cpu_text(cpu)}; errors {sum(load.errors.values())}")
        last.update(calls=load.calls_done, sent=load.mo_sent, answered=load.answered,
                    lat=len(load.sim.latencies))
        sampler.mark()

    while True:
        await load.sleep(1.0)
        now = time.perf_counter()
        load.expire(args.reply_timeout)
        load.harvest_smsc()
        if not server.running:
            load.problem("server.died", f"exit code {server.exit_code}, signal {server.signal}")
            break
        if not window and now >= warm_until:
            window.update(t0=now, rss_start=rss_bytes(pid), rss_max=rss_bytes(pid),
                          calls0=load.calls_done, sent0=load.mo_sent, due0=load.mo_due,
                          answered0=load.answered, lat0=len(load.sim.latencies),
                          cpu=Sampler(pid, pg), metrics0=await fetch_metrics(reactor, ops_port),
                          rss_series=[])
            end = now + args.duration
            if args.trace_memory:
                server.transport.signalProcess(signal.SIGUSR1)
            progress("warm-up")  # the rest of the warm-up
            log(f"[{backend}] warm-up done: {load.live} calls live; measuring "
                f"{args.duration:g} s; server RSS start {window['rss_start'] / MIB:.1f} MiB")
            next_line = now + args.interval
            continue
        if window:
            live_min, live_max = min(live_min, load.live), max(live_max, load.live)
            window["rss_max"] = max(window["rss_max"], rss_bytes(pid))
            if "rss_mid" not in window and now >= window["t0"] + args.duration / 2:
                window["rss_mid"] = rss_bytes(pid)  # the second half shows a trend apart
                # from the settling after warm-up (the heap takes minutes to reach its size)
        if now >= end:
            break
        if now >= next_line:
            if window:
                window["rss_series"].append(round(rss_bytes(pid) / MIB, 1))
            progress("soak" if window else "warm-up")
            next_line += args.interval
    if not window:
        return {}
    now = time.perf_counter()
    wall = now - window["t0"]
    progress("soak")
    window.update(
        wall=wall, rss_end=rss_bytes(pid), live_min=live_min, live_max=live_max,
        calls=load.calls_done - window["calls0"], sent=load.mo_sent - window["sent0"],
        due=load.mo_due - window["due0"], answered=load.answered - window["answered0"],
        latencies=list(load.sim.latencies[window["lat0"]:]), cpu=window["cpu"].since())
    if server.running:
        window["metrics1"] = await fetch_metrics(reactor, ops_port)
        if args.trace_memory:
            server.transport.signalProcess(signal.SIGUSR2)
            await load.sleep(5.0)  # comparing two snapshots takes the server a few seconds
    return window


async def drain(reactor: Any, backend: str, args: argparse.Namespace, load: Load,
                server: ServerProcess, ops_port: int, figures: dict[str, Any]) -> None:
    """Stop the load; let MO in flight be answered and calls end; RSS once more."""
    from twisted.internet import defer

    load.calling = False
    load.stop_mo()
    if not server.running:
        return
    log(f"[{backend}] load stopped; waiting for {load.in_flight()} MO and {load.live} calls")
    deadline = time.perf_counter() + args.reply_timeout + 1
    while load.in_flight() and time.perf_counter() < deadline:
        await load.sleep(0.5)
    load.expire(0.0 if time.perf_counter() >= deadline else args.reply_timeout)
    calls = defer.DeferredList(load.callers, consumeErrors=True)
    await calls.addTimeout(args.call_timeout + 30, reactor).addErrback(lambda f: None)
    load.callers = []
    load.harvest_smsc()
    after: dict = {}
    for _ in range(10):  # the server counts a call ended once it saw the connection close
        await load.sleep(0.5)
        if not server.running:
            return
        after = await fetch_metrics(reactor, ops_port)
        if metric(after, "loyalty_calls_active") == 0:
            break
    active = metric(after, "loyalty_calls_active")
    if active:
        load.problem("server.calls_active_after_drain", f"{active:g} calls still counted")
    figures["metrics_drained"] = after
    figures["rss_drained"] = rss_bytes(server.transport.pid)
    log(f"[{backend}] drained: server {rss_text(server.transport.pid)}, outbox depth "
        f"{metric(after, 'loyalty_outbox_depth'):g}")


async def within(reactor: Any, d: Any, seconds: float) -> bool:
    """True once ``d`` fires, False if ``seconds`` pass first; ``d`` itself is left alone
    (``addTimeout`` would cancel it, and the process protocol fires it later anyway)."""
    from twisted.internet import defer

    done: defer.Deferred = defer.Deferred()

    def fired(result: Any) -> Any:
        if not done.called:
            done.callback(True)
        return result

    d.addBoth(fired)
    timer = reactor.callLater(seconds, lambda: done.called or done.callback(False))
    ok = await done
    if timer.active():
        timer.cancel()
    return ok


async def stop_server(reactor: Any, server: ServerProcess, errors: Counter) -> None:
    if server.transport is None or not server.running:
        return
    server.terminate()
    if not await within(reactor, server.ended, 60):
        errors["server.exit"] += 1
        log("  ERROR server.exit: the server did not stop within 60 s of SIGTERM; killed")
        server.kill()
        await within(reactor, server.ended, 10)
        return
    if server.exit_code != 0:
        errors["server.exit"] += 1
        log(f"  ERROR server.exit: the server exited with code {server.exit_code} "
            f"(signal {server.signal}) on SIGTERM")


def report(backend: str, args: argparse.Namespace, server: ServerProcess, w: dict[str, Any],
           errors: Counter, results: Results) -> None:
    b = backend
    total = sum(errors.values())
    if w:
        wall = w["wall"]
        results.add("soak.window_s", b, round(wall), "s",
                    f"after {args.ramp:g} s ramp + {args.warmup:g} s warm-up")
        results.add("calls.held_min", b, w["live_min"], "calls",
                    f"target {args.calls}; max {w['live_max']}")
        results.add("calls.completed", b, w["calls"], "calls",
                    f"ended in the window, {w['calls'] / wall:.1f}/s; keys {args.keys!r}, hold "
                    f"{args.hold:g} s")
        m0, m1 = w["metrics0"], w.get("metrics1")
        if m1 is not None:
            p99, n = think_quantile(m0, m1, 0.99)
            results.add("calls.think_p99_ms", b, p99, "ms",
                        f"server /metrics histogram, {n:,.0f} AGI commands")
        results.add("mo.offered", b, w["sent"], "MO",
                    f"{w['sent'] / wall:.0f}/s, target {args.mo_rate:g}/s "
                    f"({w['due'] - w['sent']} due but not sent)")
        results.add("mo.answered", b, w["answered"], "MO", f"{w['answered'] / wall:.0f}/s")
        lat = latency_ms(w["latencies"])
        results.add("mo.rtt_p50_ms", b, lat["p50"], "ms", "MO sent -> reply MT received")
        results.add("mo.rtt_p99_ms", b, lat["p99"], "ms")
        results.add("mo.rtt_max_ms", b, lat["max"], "ms")
        growth = (w["rss_end"] - w["rss_start"]) / MIB
        results.add("rss.start_mib", b, w["rss_start"] / MIB, "MiB", "server, after warm-up")
        results.add("rss.end_mib", b, w["rss_end"] / MIB, "MiB",
                    f"growth {growth:+.1f} MiB ({growth / max(wall / 60, 1e-9):+.2f} MiB/min)")
        results.add("rss.max_mib", b, w["rss_max"] / MIB, "MiB", "sampled every second")
        if "rss_mid" in w:
            late = (w["rss_end"] - w["rss_mid"]) / MIB
            results.add("rss.growth_second_half_mib", b, late, "MiB",
                        f"{late / max(wall / 120, 1e-9):+.2f} MiB/min over the window's second "
                        "half")
        series = w["rss_series"] + [round(w["rss_end"] / MIB, 1)]
        log(f"[{backend}] server RSS (MiB) at the start, every {args.interval:g} s, and at the "
            f"end: {round(w['rss_start'] / MIB, 1)}, {', '.join(map(str, series))}")
        if "rss_drained" in w:
            results.add("rss.after_drain_mib", b, w["rss_drained"] / MIB, "MiB",
                        "load stopped, every call ended")
        cpu = w["cpu"]
        results.add("cpu.server_pct", b, cpu["server"], "% core",
                    f"reactor thread {cpu['reactor']:.0f}, database thread(s) {cpu['db']:.0f}")
        results.add("cpu.driver_pct", b, cpu["driver"], "% core",
                    "callers + SMSC simulator (this process)")
        if "postgres" in cpu:
            results.add("cpu.postgres_pct", b, cpu["postgres"], "% core",
                        "every PostgreSQL process (other jobs' too)")
        results.add("cpu.machine_pct", b, cpu["machine"], "% core",
                    f"all {os.cpu_count()} cores, everything running (other jobs too)")
        if m1 is not None:
            odd = {f"{k}={v:g}" for k, v in (
                ("mo.store_error", metric(m1, "loyalty_sms_mo_total", outcome="store_error")),
                ("mo.failed", metric(m1, "loyalty_sms_mo_total", outcome="failed")),
                ("mo.rate_limited", metric(m1, "loyalty_sms_mo_total", outcome="rate_limited")),
                ("mt.retry", metric(m1, "loyalty_sms_mt_total", outcome="retry")),
                ("mt.failed", metric(m1, "loyalty_sms_mt_total", outcome="failed")),
                ("smpp.throttled", metric(m1, "loyalty_smpp_throttled_total"))) if v}
            if odd:
                log(f"[{backend}] server counters worth a look: {', '.join(sorted(odd))}")
    results.add("errors", b, total, "count",
                ", ".join(f"{k}={v}" for k, v in sorted(errors.items()) if v) or "none")
    results.add("server.log_warnings", b, server.warnings, "lines", "warn-level server events")
    if server.other_lines:
        results.add("server.other_stderr", b, server.other_lines, "lines",
                    "server stderr lines that are no log event (shown above)")


# --- entry points -----------------------------------------------------------------------------


def run_bench(args: argparse.Namespace) -> tuple[Results, int]:
    import contextlib

    from twisted.logger import globalLogBeginner

    exit_on_sigterm()
    raise_fd_limit()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results = Results("soak", params=dict(
        backends=backends, duration_s=args.duration, calls=args.calls, mo_rate=args.mo_rate,
        members=args.members, hold_s=args.hold, keys=args.keys, ramp_s=args.ramp,
        warmup_s=args.warmup, reply_timeout_s=args.reply_timeout, smpp=sms_bench.BENCH_SMPP))
    # This process's own error events (a simulator crash, an unhandled Deferred error) count.
    driver_errors: Counter = Counter()
    globalLogBeginner.beginLoggingTo([driver_log(driver_errors)], redirectStandardIO=False)
    warnings.filterwarnings("ignore", "Using readBody", DeprecationWarning)
    totals: list[int] = []
    with contextlib.ExitStack() as stack:
        workdir = stack.enter_context(scratch_dir("loyalty-soak-"))
        urls = {}
        for backend in backends:
            urls[backend] = stack.enter_context(fresh_database(backend))
            log(f"populating {backend}: demo data + {args.members:,} callers + "
                f"{args.members:,} texters")
            populate(urls[backend], itertools.chain(
                ivr_bench.bench_members(args.members, programme_today()),
                sms_bench.bench_members(args.members, date.today())))

        async def main(reactor: Any) -> None:
            for backend in backends:
                before = driver_errors["driver.log_errors"]
                n = await soak(reactor, backend, urls[backend], args, results, workdir)
                extra = driver_errors["driver.log_errors"] - before
                if extra:
                    results.add("driver.log_errors", backend, extra, "count",
                                "error events in the driver process")
                totals.append(n + extra)

        react(main)
    return results, sum(totals)


def driver_log(errors: Counter) -> Callable[[dict], None]:
    """Warn and above from this process to stderr; error and critical are counted."""
    from twisted.logger import LogLevel

    write = level_lines(sys.stderr)

    def observe(event: dict) -> None:
        if event.get("log_level") in (LogLevel.error, LogLevel.critical):
            errors["driver.log_errors"] += 1
        write(event)

    return observe


def dedupe_window_s() -> float:
    """How long the server takes a repeated MO for an SMSC redelivery (the configured
    ``smpp.mo_dedupe_window_s``; a fixed 10 minutes before that setting existed)."""
    from core.config import load_config

    return float(getattr(load_config(environ={}).smpp, "mo_dedupe_window_s", 600.0))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.soak_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    p.add_argument("--duration", type=float, default=600.0, help="measured seconds")
    p.add_argument("--calls", type=int, default=1000, help="calls kept up at all times")
    p.add_argument("--mo-rate", type=float, default=500.0, help="MO per second offered")
    p.add_argument("--members", type=int, default=30000,
                   help="members per channel (>= mo-rate * 60 / 8 and >= 2 * calls)")
    p.add_argument("--hold", type=float, default=4.0,
                   help="seconds a caller spends on each prompt and input (+-50 %%)")
    p.add_argument("--keys", default="2T3TH", help="every caller's keys (see ivr_bench)")
    # A call with the default keys and hold lasts about 110 s: starting the callers over about
    # one call's length spreads hang-ups and new calls evenly (~9/s) from then on, instead of
    # waves of 1,000 calls ending together.
    p.add_argument("--ramp", type=float, default=120.0, help="seconds to start every caller")
    p.add_argument("--warmup", type=float, default=30.0,
                   help="seconds after the ramp before measuring")
    p.add_argument("--interval", type=float, default=30.0, help="seconds between progress lines")
    p.add_argument("--reply-timeout", type=float, default=30.0,
                   help="seconds an MO may wait for its reply")
    p.add_argument("--call-timeout", type=float, default=300.0,
                   help="seconds a call may last before it counts as failed")
    p.add_argument("--trace-memory", action="store_true",
                   help="diagnosis: the server traces Python allocations and prints the "
                        "source lines that grew most over the window (slow: lighter load)")
    p.add_argument("--json", action="store_true", help="JSON on stdout")
    p.add_argument("--serve", metavar="URL", help=argparse.SUPPRESS)
    p.add_argument("--smsc-port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--max-calls", type=int, default=3000, help=argparse.SUPPRESS)
    p.add_argument("--log-file", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.serve:
        # 8 a minute per number at most (the limit is 10), no (number, text) pair twice within
        # the dedupe window (+10 % for numbers waiting on replies), 2 callers per call.
        need = max(math.ceil(args.mo_rate * 60 / 8),
                   math.ceil(1.1 * args.mo_rate * dedupe_window_s() / len(BALANCE_SPELLINGS)),
                   2 * args.calls)
        if args.members < need:
            p.error(f"--members must be at least {need:,} for {args.mo_rate:g} MO/s and "
                    f"{args.calls} calls")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        serve(args)
        return 0
    results, errors = run_bench(args)
    if args.json:
        print(results.to_json())
    out = sys.stderr if args.json else sys.stdout
    for backend in results.params["backends"]:
        one = Results(results.bench, results.params,
                      [f for f in results.figures if f.backend == backend])
        print(f"\nsoak on {backend}: {args.calls} calls + {args.mo_rate:g} MO/s for "
              f"{args.duration:g} s", file=out)
        one.print_table(file=out)
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
