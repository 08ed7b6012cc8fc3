"""The human status page: health, the metrics registry summarised, and extra facts, as HTML.

Pure functions (no Twisted): ``collect_samples`` reads a prometheus CollectorRegistry,
``render_status_page`` turns it into one self-contained, auto-escaped UTF-8 page.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from prometheus_client import CollectorRegistry

TEMPLATES = Path(__file__).parent / "templates"

Sample = tuple[Mapping[str, str], float]


@dataclass(frozen=True)
class Table:
    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...] = field(default=())
    numeric: int = 1  # trailing columns that hold numbers (right-aligned)
    empty: str = "none yet"


def collect_samples(registry: CollectorRegistry) -> dict[str, list[Sample]]:
    """Sample name (``loyalty_calls_total``...) -> [(labels, value)] for every collector."""
    samples: dict[str, list[Sample]] = {}
    for family in registry.collect():
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def _number(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.3f}"


def _total(samples: Mapping[str, list[Sample]], name: str) -> float:
    return sum(value for _, value in samples.get(name, ()))


def _value(samples: Mapping[str, list[Sample]], name: str) -> float | None:
    found = samples.get(name)
    return found[0][1] if found else None


def _by(samples: Mapping[str, list[Sample]], name: str,
        labels: Iterable[str]) -> tuple[tuple[str, ...], ...]:
    labels = tuple(labels)
    rows = [tuple(found.get(k, "") for k in labels) + (_number(value),)
            for found, value in samples.get(name, ())]
    return tuple(sorted(rows))


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days} d"] if days else []
    if days or hours:
        parts.append(f"{hours} h")
    parts.append(f"{minutes} min" if days or hours or minutes else f"{secs} s")
    return " ".join(parts)


def _instant(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def summarize(samples: Mapping[str, list[Sample]]) -> tuple[list[tuple[str, str]], list[Table]]:
    """The overview rows and the per-label tables drawn from the loyalty_* metrics."""
    bound = _value(samples, "loyalty_smpp_bound")
    active = _value(samples, "loyalty_calls_active")
    outbox = _value(samples, "loyalty_outbox_depth")
    think_count = _total(samples, "loyalty_agi_think_seconds_count")
    think_sum = _total(samples, "loyalty_agi_think_seconds_sum")
    overview = [
        ("Active calls", _number(active) if active is not None else "n/a"),
        ("Finished calls", _number(_total(samples, "loyalty_calls_total"))),
        ("AGI think time (mean)",
         f"{1000 * think_sum / think_count:.1f} ms over {_number(think_count)} commands"
         if think_count else "no commands yet"),
        ("SMPP bound", "n/a" if bound is None else ("yes" if bound >= 1 else "no")),
        ("SMS received (MO)", _number(_total(samples, "loyalty_sms_mo_total"))),
        ("SMS sent (MT)", _number(_total(samples, "loyalty_sms_mt_total"))),
        ("Outbox depth", _number(outbox) if outbox is not None else "n/a"),
        ("SMSC throttles", _number(_total(samples, "loyalty_smpp_throttled_total"))),
        ("Redemptions", _number(_total(samples, "loyalty_redemptions_total"))),
    ]
    runs = {labels.get("job", ""): v for labels, v in samples.get("loyalty_job_runs_total", ())}
    fails = {labels.get("job", ""): v
             for labels, v in samples.get("loyalty_job_failures_total", ())}
    jobs = tuple((job, _number(runs.get(job, 0.0)), _number(fails.get(job, 0.0)))
                 for job in sorted(runs.keys() | fails.keys()))
    tables = [
        Table("Calls by outcome", ("Script", "Outcome", "Calls"),
              _by(samples, "loyalty_calls_total", ("script", "outcome"))),
        Table("SMS received (MO) by outcome", ("Outcome", "Messages"),
              _by(samples, "loyalty_sms_mo_total", ("outcome",))),
        Table("SMS sent (MT) by outcome", ("Outcome", "Messages"),
              _by(samples, "loyalty_sms_mt_total", ("outcome",))),
        Table("Delivery receipts by state", ("State", "Receipts"),
              _by(samples, "loyalty_sms_receipts_total", ("state",))),
        Table("Redemptions by channel", ("Channel", "Redemptions"),
              _by(samples, "loyalty_redemptions_total", ("channel",))),
        Table("Jobs", ("Job", "Runs", "Failures"), jobs, numeric=2),
    ]
    return overview, tables


@functools.cache
def _environment() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True,
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                       auto_reload=False)  # rendered on the reactor: no stat per request


def render_status_page(*, samples: Mapping[str, list[Sample]], health: Mapping[str, Any],
                       extra: Mapping[Any, Any], started_at: float, now: float,
                       refresh_seconds: int = 10) -> bytes:
    """The page as UTF-8 bytes. ``health``: name -> object with ``ok`` and ``detail``."""
    overview, tables = summarize(samples)
    checks = [(str(name), bool(result.ok), str(result.detail)) for name, result in health.items()]
    page = _environment().get_template("status.html.j2").render(
        healthy=all(ok for _, ok, _ in checks),
        checks=checks,
        up_since=_instant(started_at),
        uptime=_duration(now - started_at),
        generated=_instant(now),
        overview=overview,
        tables=tables,
        extra=[(str(k), str(v)) for k, v in extra.items()],
        refresh_seconds=int(refresh_seconds),
    )
    return page.encode("utf-8")
