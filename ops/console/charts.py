"""The last hour of the server's own metrics, per minute, drawn as inline SVG.

``MetricsRing`` samples the process's prometheus registry on the reactor every few seconds (a
registry read is a few microseconds: nothing blocks) and keeps the last sample of each minute
for the last hour. ``series`` turns those into per-minute values: counters as the increase over
the minute, gauges as their last value, AGI think-time p99 from the histogram's bucket
increases. No external service is involved; ``config/grafana-dashboard.json`` draws the same
series from ``/metrics`` for those who run Prometheus.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry
from twisted.application.service import Service
from twisted.internet import task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

log = Logger(namespace="loyalty.ops")

MINUTES = 60
GAUGES = ("calls_active", "outbox_depth")  # shown as they are; the rest per minute


@dataclass(frozen=True)
class Snapshot:
    mo: float
    mt: float
    calls_active: float
    outbox_depth: float
    throttled: float
    think: tuple[tuple[float, float], ...]  # (upper bound, cumulative count) per bucket


def snapshot(registry: CollectorRegistry) -> Snapshot:
    totals: dict[str, float] = {}
    think: dict[float, float] = {}
    for family in registry.collect():
        for s in family.samples:
            if s.name == "loyalty_agi_think_seconds_bucket":
                think[float(s.labels["le"])] = s.value
            else:
                totals[s.name] = totals.get(s.name, 0.0) + s.value
    return Snapshot(totals.get("loyalty_sms_mo_total", 0.0),
                    totals.get("loyalty_sms_mt_total", 0.0),
                    totals.get("loyalty_calls_active", 0.0),
                    totals.get("loyalty_outbox_depth", 0.0),
                    totals.get("loyalty_smpp_throttled_total", 0.0),
                    tuple(sorted(think.items())))


class MetricsRing(Service):
    """The last sample of each of the last ``MINUTES`` minutes (plus the one before them)."""

    name = "console-metrics"

    def __init__(self, registry: CollectorRegistry, reactor: IReactorTime, *,
                 interval_s: float = 5.0) -> None:
        self.registry = registry
        self.reactor = reactor
        self.interval_s = interval_s
        self.minutes: OrderedDict[int, Snapshot] = OrderedDict()
        self._loop: task.LoopingCall | None = None

    def startService(self) -> None:
        super().startService()
        self._loop = task.LoopingCall(self.sample)
        self._loop.clock = self.reactor
        self._loop.start(self.interval_s, now=True).addErrback(
            lambda f: log.failure("console metrics sampling stopped", f))

    def stopService(self) -> None:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def sample(self) -> None:
        minute = int(self.reactor.seconds() // 60)
        self.minutes[minute] = snapshot(self.registry)
        self.minutes.move_to_end(minute)
        while len(self.minutes) > MINUTES + 1:
            self.minutes.popitem(last=False)

    def series(self) -> dict[str, list[tuple[int, float | None]]]:
        """name -> [(minute, value or None when not sampled)] for the last hour."""
        now_minute = int(self.reactor.seconds() // 60)
        out: dict[str, list[tuple[int, float | None]]] = {
            k: [] for k in ("mo", "mt", "calls_active", "think_p99_ms", "outbox_depth",
                            "throttled")}
        for minute in range(now_minute - MINUTES + 1, now_minute + 1):
            this, before = self.minutes.get(minute), self.minutes.get(minute - 1)
            for key in out:
                # The minute under way would show as a fall: counters end at the last whole one.
                partial = minute == now_minute and key not in GAUGES
                out[key].append((minute, None if partial else _value(key, this, before)))
        return out


def _value(key: str, this: Snapshot | None, before: Snapshot | None) -> float | None:
    if this is None:
        return None
    if key in GAUGES:
        return getattr(this, key)
    if before is None:
        return None
    if key == "think_p99_ms":
        return _p99_ms(this.think, before.think)
    return max(0.0, getattr(this, key) - getattr(before, key))  # a restart resets counters


def _p99_ms(now: tuple[tuple[float, float], ...],
            then: tuple[tuple[float, float], ...]) -> float | None:
    earlier = dict(then)
    deltas = [(le, count - earlier.get(le, 0.0)) for le, count in now]
    total = deltas[-1][1] if deltas else 0.0
    if total <= 0:
        return None
    for le, cumulative in deltas:
        if cumulative >= 0.99 * total:
            return 1000 * le if le != float("inf") else 1000 * max(
                (b for b, _ in deltas if b != float("inf")), default=0.0)
    return None


# --- drawing ------------------------------------------------------------------------------

WIDTH, HEIGHT, PAD = 600, 140, 40


def svg_chart(points: list[tuple[int, float | None]], *, unit: str = "") -> dict[str, Any]:
    """What the template needs to draw one line chart: polyline points, axis labels."""
    values = [v for _, v in points if v is not None]
    top = max(values, default=0.0)
    top = top if top > 0 else 1.0
    n = max(len(points) - 1, 1)
    segments: list[list[str]] = [[]]
    for i, (_, v) in enumerate(points):
        if v is None:
            if segments[-1]:
                segments.append([])
            continue
        x = PAD + i * (WIDTH - 2 * PAD) / n
        y = HEIGHT - PAD / 2 - (v / top) * (HEIGHT - PAD)
        segments[-1].append(f"{x:.1f},{y:.1f}")
    last = values[-1] if values else None
    return {"width": WIDTH, "height": HEIGHT, "pad": PAD,
            "lines": [" ".join(s) for s in segments if len(s) > 1],
            "dots": [s[0].split(",") for s in segments if len(s) == 1],  # a lone minute
            "top": _label(top), "last": "no data yet" if last is None else _label(last) + unit,
            "samples": len(values)}


def _label(value: float) -> str:
    return str(round(value)) if value == int(value) or value >= 10 else f"{value:.1f}"
