"""The console's per-minute ring of the server's own metrics, and its SVG drawing."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from core.metrics import Metrics
from ops.console.charts import MINUTES, MetricsRing, svg_chart


def test_ring_gives_per_minute_increases_gauges_and_think_time_p99():
    metrics, clock = Metrics(), Clock()
    clock.advance(60 * 16_000 + 10)
    ring = MetricsRing(metrics.registry, clock, interval_s=5)
    ring.startService()  # samples now and every 5 s
    try:
        assert len(ring.minutes) == 1
        for minute in range(2):
            metrics.sms_mo.labels(outcome="handled").inc(24 + 12 * minute)
            metrics.sms_mt.labels(outcome="accepted").inc(24)
            for _ in range(10):
                metrics.agi_think.observe(0.004)
            metrics.calls_active.set(7 + minute)
            metrics.outbox_depth.set(40 - minute)
            clock.advance(60)
        metrics.agi_think.observe(0.2)  # one slow command among the next minute's 100
        for _ in range(99):
            metrics.agi_think.observe(0.0008)
        metrics.smpp_throttled.inc(3)
        clock.advance(60)
        series = ring.series()
    finally:
        ring.stopService()
    assert all(len(points) == MINUTES for points in series.values())
    # The minute under way is left out of the counters (it would look like a fall).
    assert [v for _, v in series["mo"][-4:]] == [None, 24, 36, None]  # the first: no before
    assert [v for _, v in series["mt"][-4:]] == [None, 24, 24, None]
    assert series["calls_active"][-1][1] == 8  # gauges: as they are now
    assert series["outbox_depth"][-1][1] == 39
    clock.advance(60)
    series = ring.series()
    assert [v for _, v in series["throttled"][-4:]] == [0, 0, 3, None]
    p99 = [v for _, v in series["think_p99_ms"][-4:-1]]
    assert p99[:2] == [pytest.approx(5.0)] * 2  # every command under the 5 ms bucket
    assert p99[2] == pytest.approx(1.0)  # 99 of 100 under 1 ms: the slow one is the 1 %
    assert series["mo"][0][1] is None  # before it started: nothing, not zero


def test_svg_chart_scales_to_the_largest_value_and_leaves_gaps():
    chart = svg_chart([(0, 0.0), (1, 10.0), (2, None), (3, 5.0)], unit=" ms")
    assert chart["top"] == "10" and chart["last"] == "5 ms"
    assert len(chart["lines"]) == 1 and len(chart["dots"]) == 1  # a missing minute: a gap
    assert svg_chart([(0, None)])["last"] == "no data yet"


def test_grafana_dashboard_uses_only_series_the_server_exports():
    import json
    import re
    from pathlib import Path

    from ops.status_page import collect_samples

    metrics = Metrics()
    metrics.calls.labels(script="loyalty", outcome="ok").inc()  # labelled series appear once used
    for counter in (metrics.sms_mo, metrics.sms_mt):
        counter.labels(outcome="x").inc()
    metrics.receipts.labels(state="DELIVRD").inc()
    metrics.redemptions.labels(channel="sms").inc()
    for counter in (metrics.job_runs, metrics.job_failures, metrics.job_set_aside):
        counter.labels(job="j").inc()
    metrics.sms_set_aside.labels(queue="mo").set(1)
    exported = set(collect_samples(metrics.registry))
    path = Path(__file__).resolve().parents[2] / "config" / "grafana-dashboard.json"
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    used = {name for panel in dashboard["panels"] for target in panel["targets"]
            for name in re.findall(r"\bloyalty_[a-z_]+", target["expr"])}
    assert len(used) >= 10
    assert used - exported == set()
