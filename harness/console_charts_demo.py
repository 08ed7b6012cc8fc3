"""An hour of made-up traffic through the console's metrics ring, drawn as the charts page and
photographed by Debian's chromium: the picture in docs/console/charts.png.

    .venv/bin/python -m harness.console_charts_demo docs/console/charts.png

Nothing listens and nothing leaves the process: the page and its style sheet are handed to
the browser directly.
"""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

from twisted.internet.task import Clock

from core.metrics import Metrics
from ops.console.app import HERE, _environment
from ops.console.charts import MetricsRing, svg_chart
from ops.console.pages import CHARTS

BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"]


def an_hour(seed: int = 7) -> MetricsRing:
    """The ring after an hour of a weekday's evening load, sampled every 5 s."""
    rng = random.Random(seed)
    metrics, clock = Metrics(), Clock()
    clock.advance(60 * 29_000_000)
    ring = MetricsRing(metrics.registry, clock, interval_s=5)
    ring.startService()
    for minute in range(61):
        wave = 1 + 0.5 * math.sin(minute / 9)
        for _ in range(12):
            metrics.sms_mo.labels(outcome="handled").inc(rng.randint(20, 30) * wave)
            metrics.sms_mt.labels(outcome="accepted").inc(rng.randint(21, 32) * wave)
            metrics.calls_active.set(int(40 * wave + rng.randint(-4, 4)))
            for _ in range(50):
                metrics.agi_think.observe(rng.choice((0.0006, 0.0008, 0.0015, 0.003)))
            if 35 <= minute <= 40:  # a short SMSC hiccup: throttles, the outbox grows
                metrics.smpp_throttled.inc(rng.randint(2, 6))
                metrics.agi_think.observe(0.04)
            metrics.outbox_depth.set(max(0, int(300 * math.exp(-abs(minute - 39) / 2))
                                         + rng.randint(0, 5)))
            clock.advance(5)
    ring.stopService()
    return ring


def render(ring: MetricsRing) -> str:
    series = ring.series()
    charts = [(title, svg_chart(series[key], unit=unit)) for key, title, unit in CHARTS]
    return _environment().get_template("charts.html.j2").render(
        actor="alice", csrf="", flash=[], charts=charts)


def main(argv: list[str] | None = None) -> int:
    from playwright.sync_api import sync_playwright

    out = Path((argv if argv is not None else sys.argv[1:] or ["docs/console/charts.png"])[0])
    html, css = render(an_hour()), (HERE / "static" / "console.css").read_text()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.route("**/console/static/console.css",
                   lambda route: route.fulfill(body=css, content_type="text/css"))
        page.route("**/console/charts",
                   lambda route: route.fulfill(body=html, content_type="text/html"))
        page.goto("http://console.invalid/console/charts")
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out))
        browser.close()
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
