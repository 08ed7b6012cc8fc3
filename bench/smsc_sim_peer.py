"""Our own SMSC simulator behind the node bench SMSC's control protocol (the second peer).

    .venv/bin/python -m bench.smsc_sim_peer [--receipt-delay-ms 100]

``harness.smsc_simulator`` (through ``bench.sms_bench.make_smsc``, which times every MO until
the first whole MT to its number) driven by the same stdin/stdout JSON lines as
``bench/smsc_node/smsc.js`` (see there: ``members``, ``run``, ``stats``, ``quit``; events
``listening``, ``bound``, ``unbound``, ``measuring``, ``measured``, ``result``), so
``bench.sms_peer_bench`` runs both peers the same way. Differences from the node peer: the
simulator keeps no window of its own on deliver_sm (``window`` only sizes the ESME's), and its
latency clock starts when the MO is written rather than queued (nothing queues here).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import deque
from typing import Any

from bench.common import latency_ms, react


def emit(event: str, **fields: Any) -> None:
    print(json.dumps(dict(event=event, **fields)), flush=True)


class Driver:
    """Closed and open loops over the members, each cycling through its texts."""

    def __init__(self, reactor: Any, receipt_delay_s: float) -> None:
        from bench.sms_bench import make_smsc

        self.reactor = reactor
        self.sim = make_smsc(receipts=True)
        self.sim.receipt_delay_s = receipt_delay_s
        self.free: deque[str] = deque()
        self.texts = ["JF"]
        self.index: dict[str, int] = {}
        self.sent_count: dict[str, int] = {}
        self.pending: dict[str, float] = {}
        self.run: dict[str, Any] | None = None
        self.sim.on_reply = self.replied
        self.bound = False

    def send(self) -> bool:
        if not self.free:
            return False
        number = self.free.popleft()
        n = self.sent_count.get(number, 0)
        self.sent_count[number] = n + 1
        self.pending[number] = time.perf_counter()
        if self.run is not None:
            self.run["offered"] += 1
        self.sim.send(number, self.texts[(n + self.index.get(number, 0)) % len(self.texts)])
        return True

    def replied(self, number: str) -> None:
        self.pending.pop(number, None)
        run = self.run
        if run is not None and run["counting"]:
            run["done"] += 1
        self.free.append(number)
        if run is not None and run["mode"] == "closed" and run["loop"]:
            self.send()

    def expire(self, timeout_s: float) -> None:
        limit = time.perf_counter() - timeout_s
        for number, t in list(self.pending.items()):
            if t < limit:
                del self.pending[number]
                self.sim.sent.pop(number, None)
                if self.run is not None:
                    self.run["lost"] += 1
                self.free.append(number)

    async def do_run(self, cmd: dict[str, Any]) -> dict[str, Any]:
        from twisted.internet import task

        def sleep(s: float):
            return task.deferLater(self.reactor, s, lambda: None)

        mode = cmd.get("mode", "closed")
        run = self.run = dict(mode=mode, loop=True, counting=False, done=0, offered=0,
                              skipped=0, lost=0)
        reaper = task.LoopingCall(self.expire, cmd.get("timeout_s", 10))
        reaper.start(0.25, now=False)
        ticker = None
        errors0, sent0 = self.sim.mo_errors, len(self.sim.submit_statuses)
        if mode == "closed":
            for _ in range(min(cmd.get("in_flight", 50), len(self.free))):
                self.send()
        else:
            start, rate, box = time.perf_counter(), cmd.get("rate", 1000), {"sent": 0}

            def tick() -> None:
                due = int((time.perf_counter() - start) * rate) - box["sent"]
                for _ in range(max(0, due)):
                    box["sent"] += 1
                    if not self.send():
                        run["skipped"] += 1

            ticker = task.LoopingCall(tick)
            ticker.start(0.001)
        await sleep(cmd.get("warmup_s", 0))
        self.sim.latencies.clear()
        base = dict(offered=run["offered"], skipped=run["skipped"])
        run["counting"] = True
        emit("measuring")
        t0, cpu0 = time.perf_counter(), time.process_time()
        await sleep(cmd.get("duration_s", 10))
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        run["counting"] = run["loop"] = False
        if ticker is not None:
            ticker.stop()
        emit("measured")
        latencies = list(self.sim.latencies)  # replies inside the window
        drain_until = time.perf_counter() + cmd.get("drain_s", 2)
        while self.pending and time.perf_counter() < drain_until:
            await sleep(0.02)
        reaper.stop()
        self.expire(0)
        self.run = None
        lat = latency_ms(latencies) if latencies else dict(p50=None, p99=None, max=None)
        return dict(event="result", mode=mode, window=cmd.get("window"),
                    in_flight=cmd.get("in_flight", 50) if mode == "closed" else None,
                    rate_offered=(run["offered"] - base["offered"]) / elapsed
                    if mode == "open" else None,
                    skipped=run["skipped"] - base["skipped"], elapsed_s=elapsed,
                    round_trips=run["done"], per_s=run["done"] / elapsed,
                    p50_ms=lat["p50"], p99_ms=lat["p99"], max_ms=lat["max"],
                    mo_errors=self.sim.mo_errors - errors0, lost=run["lost"], extra_mt=None,
                    submits=len(self.sim.submit_statuses) - sent0, receipts=None,
                    smsc_cpu_s=cpu)

    async def command(self, cmd: dict[str, Any]) -> bool:
        if cmd.get("cmd") == "members":
            self.texts = cmd.get("texts") or self.texts
            self.index = {n: i for i, n in enumerate(cmd["numbers"])}
            self.free = deque(n for n in cmd["numbers"] if n not in self.pending)
            emit("members", count=len(self.index), texts=len(self.texts))
        elif cmd.get("cmd") == "run":
            print(json.dumps(await self.do_run(cmd)), flush=True)
        elif cmd.get("cmd") == "stats":
            emit("stats", bound=self.sim.session is not None, pending=len(self.pending))
        elif cmd.get("cmd") == "quit":
            emit("bye")
            return False
        return True

    def watch_binding(self) -> None:
        bound = self.sim.session is not None
        if bound != self.bound:
            self.bound = bound
            emit("bound" if bound else "unbound")
            if not bound:  # what was in flight on that link is lost
                self.free.extend(self.pending)
                self.pending.clear()
                self.sim.sent.clear()


async def serve(reactor: Any, args: argparse.Namespace) -> None:
    from twisted.internet import defer, task, threads

    driver = Driver(reactor, args.receipt_delay_ms / 1000)
    port = driver.sim.listen(0).getHost().port
    emit("listening", port=port)
    watcher = task.LoopingCall(driver.watch_binding)
    watcher.start(0.02)
    try:
        while True:
            line = await threads.deferToThread(sys.stdin.readline)
            if not line:
                break
            if line.strip():
                try:
                    if not await driver.command(json.loads(line)):
                        break
                except Exception as exc:  # noqa: BLE001 - reported to the controller
                    emit("error", message=repr(exc))
    finally:
        watcher.stop()
        await defer.maybeDeferred(driver.sim.stop)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.smsc_sim_peer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--receipt-delay-ms", type=float, default=100.0)
    args = p.parse_args(argv)
    react(lambda reactor: serve(reactor, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
