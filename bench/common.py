"""Small helpers shared by the bench scripts: percentiles, throw-away databases, result tables.

Nothing here knows about any one benchmark. A bench script records figures in a ``Results``
and prints them with ``Results.print_table`` (or ``Results.to_json`` for an aggregator).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import create_engine, text

# The PostgreSQL used when none is given: the tests' variable (which the config loader ignores),
# else the local trust-auth server of the development setup.
DEFAULT_PG_URL = os.environ.get(
    "LOYALTY_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def log(message: str) -> None:
    """Progress goes to stderr, so stdout carries only the results."""
    print(message, file=sys.stderr, flush=True)


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) with linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50 / p99 / max / mean in milliseconds of a list of durations in seconds."""
    ms = sorted(s * 1000 for s in seconds)
    return dict(p50=percentile(ms, 50), p99=percentile(ms, 99), max=ms[-1] if ms else math.nan,
                mean=sum(ms) / len(ms) if ms else math.nan)


@contextlib.contextmanager
def stopwatch() -> Iterator[list[float]]:
    """``with stopwatch() as t: ...`` then ``t[0]`` holds the elapsed seconds."""
    box: list[float] = []
    start = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - start)


# --- throw-away databases -----------------------------------------------------------------


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so ``finally`` blocks drop what they created."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


@contextlib.contextmanager
def scratch_dir(prefix: str = "loyalty-bench-") -> Iterator[str]:
    path = tempfile.mkdtemp(prefix=prefix)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(backend: str, *, pg_url: str = DEFAULT_PG_URL,
                   workdir: str | None = None, migrate: bool = True) -> Iterator[str]:
    """A new empty database for the duration of the block; yields its URL.

    ``sqlite``: a file in ``workdir`` (or a temporary directory), removed afterwards.
    ``postgresql``: a private schema in ``pg_url`` (like the tests), dropped afterwards.
    With ``migrate`` the schema is brought to head through ``Store.upgrade``.
    """
    from core.store import Store

    with contextlib.ExitStack() as stack:
        if backend == "sqlite":
            folder = workdir or stack.enter_context(scratch_dir())
            path = os.path.join(folder, f"bench-{uuid.uuid4().hex[:8]}.sqlite3")
            stack.callback(_remove_sqlite, path)
            url = f"sqlite:///{path}"
        elif backend == "postgresql":
            schema = f"bench_{uuid.uuid4().hex[:12]}"
            _pg_admin(pg_url, f"CREATE SCHEMA {schema}")
            stack.callback(_pg_admin, pg_url, f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            sep = "&" if "?" in pg_url else "?"
            url = f"{pg_url}{sep}options=-csearch_path%3D{schema}"
        else:
            raise ValueError(f"unknown backend {backend!r}")
        if migrate:
            store = Store(url)
            try:
                store.upgrade()
            finally:
                store.dispose()
        yield url


def _remove_sqlite(path: str) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path + suffix)


def _pg_admin(pg_url: str, statement: str) -> None:
    engine = create_engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(statement))
    finally:
        engine.dispose()


def pg_server_version(pg_url: str = DEFAULT_PG_URL) -> str | None:
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql("SHOW server_version").scalar()
    except Exception:  # noqa: BLE001 - only for the report header
        return None
    finally:
        engine.dispose()


# --- results ------------------------------------------------------------------------------


@dataclass
class Figure:
    name: str        # stable key for aggregators, e.g. "balance.p99_ms"
    backend: str     # "sqlite", "postgresql" or "-"
    value: float
    unit: str
    note: str = ""


@dataclass
class Results:
    bench: str
    params: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)

    def add(self, name: str, backend: str, value: float, unit: str, note: str = "") -> None:
        self.figures.append(Figure(name, backend, value, unit, note))

    def environment(self) -> dict[str, Any]:
        import sqlite3

        import sqlalchemy

        return dict(python=platform.python_version(), sqlalchemy=sqlalchemy.__version__,
                    sqlite=sqlite3.sqlite_version, cpus=os.cpu_count(),
                    machine=platform.machine(), system=platform.system(),
                    load_average=[round(x, 2) for x in os.getloadavg()])

    def to_json(self, **extra: Any) -> str:
        return json.dumps(dict(bench=self.bench, params=self.params,
                               environment=self.environment() | extra,
                               figures=[asdict(f) for f in self.figures]),
                          ensure_ascii=False, indent=2)

    def print_table(self, file=None) -> None:
        rows = [(f.name, f.backend, format_value(f.value), f.unit, f.note) for f in self.figures]
        print_table(("figure", "backend", "value", "unit", "note"), rows, file=file,
                    align="llrll")


def format_value(value: float) -> str:
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()
                                  and abs(value) >= 100):
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def print_table(header: Sequence[str], rows: Sequence[Sequence[Any]], *, file=None,
                align: str = "") -> None:
    """A plain aligned text table; ``align`` is one 'l' or 'r' per column (default 'l')."""
    file = file or sys.stdout
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    align = align.ljust(len(header), "l")

    def line(row: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if a == "r" else c.ljust(w)
                         for c, w, a in zip(row, widths, align, strict=True)).rstrip()

    print(line(cells[0]), file=file)
    print("  ".join("-" * w for w in widths), file=file)
    for row in cells[1:]:
        print(line(row), file=file)
    file.flush()
