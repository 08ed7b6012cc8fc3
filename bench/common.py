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
import resource
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

from sqlalchemy import Engine, create_engine, text

# The PostgreSQL used when none is given: the tests' variable (which the config loader ignores),
# else the local trust-auth server of the development setup.
DEFAULT_PG_URL = os.environ.get(
    "LOYALTY_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

# Twelve spellings of the balance keyword. The same text from one number within
# smpp.mo_dedupe_window_s is taken for a redelivery (no second answer), so benches that send a
# member several balance requests cycle through these.
BALANCE_SPELLINGS = ("JF", "jf", "Jf", "jF", "积分", "ＪＦ", "BALANCE", "balance", "Balance",
                     "POINTS", "points", "Points")


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


# --- bench data ---------------------------------------------------------------------------


class BenchMember(NamedTuple):
    """One member a bench loads, with its lots as (points, source, earned_on)."""

    msisdn: str
    name: str
    language: str
    lots: Sequence[tuple[int, str, date]]


def populate(url: str, members: Iterable[BenchMember], *, batch: int = 5000) -> int:
    """The demo data set plus ``members``, each lot with its credit ledger entry; returns how
    many members were added.

    Bulk inserts in batches: the same rows ``credit_points`` would write per lot (remaining =
    amount, reason = source, channel ``import``), without a transaction per lot, so tens of
    thousands of members load in seconds on either backend. PostgreSQL's statistics are
    refreshed at the end so the benchmark does not measure a planner that still thinks the
    tables are empty.
    """
    from core.config import load_config
    from core.demo import load_demo
    from core.domain import Channel, LedgerKind
    from core.rules import ProgrammeRules, expiry_for
    from core.store import Store

    config = load_config(environ={})
    rules = ProgrammeRules(config.programme, config.tiers)
    now = datetime.now(UTC)
    store = Store(url)
    added = 0
    try:
        with store.unit_of_work() as uow:
            load_demo(uow, rules, now)  # committed as the block ends
        chunk: list[BenchMember] = []

        def flush() -> None:
            lots = [(m.msisdn, points, source, earned_on)
                    for m in chunk for points, source, earned_on in m.lots]
            with store.unit_of_work() as uow:
                uow.members.upsert_members([
                    dict(msisdn=m.msisdn, name=m.name, language=m.language,
                         tier_code="standard", created_at=now) for m in chunk])
                uow.members.add_lots_bulk([dict(
                    msisdn=msisdn, amount=points, remaining=points, source=source,
                    earned_on=earned_on, expires_at=expiry_for(earned_on, config.programme),
                    reference=None, expired=False, created_at=now)
                    for msisdn, points, source, earned_on in lots])
                uow.members.add_ledger_bulk([dict(
                    msisdn=msisdn, kind=LedgerKind.CREDIT, amount=points, reason=source,
                    channel=Channel.IMPORT, order_no=None, reference=None, created_at=now)
                    for msisdn, points, source, _ in lots])
                uow.commit()

        for m in members:
            chunk.append(m)
            if len(chunk) >= batch:
                flush()
                added += len(chunk)
                chunk.clear()
        if chunk:
            flush()
            added += len(chunk)
        with store.unit_of_work() as uow:
            uow.refresh_statistics("members", "points_lots", "ledger")
            uow.commit()
    finally:
        store.dispose()
    return added


def programme_today() -> date:
    """Today's date in the programme's time zone (the date the core's rules use)."""
    from core.config import load_config
    from core.rules import ProgrammeRules

    config = load_config(environ={})
    return ProgrammeRules(config.programme, config.tiers).today(datetime.now(UTC))


# --- processes ----------------------------------------------------------------------------


def raise_fd_limit() -> int:
    """Thousands of calls are thousands of sockets: lift the soft file limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of a process (this one by default), from Linux /proc."""
    with open(f"/proc/{pid or 'self'}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def proc_cpu(pid: int, tid: int | None = None) -> float:
    """CPU seconds (user + system) a process, or one of its threads, has used so far (Linux
    /proc; NaN elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def react(main: Callable[[Any], Awaitable[Any]]) -> None:
    """Run ``main(reactor)`` in the reactor until it finishes (``twisted.internet.task.react``
    without its ``sys.exit`` on success, so the caller can print its results afterwards)."""
    from twisted.internet import defer, task

    try:
        task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
    except SystemExit as done:
        if done.code not in (0, None):
            raise


def pg_server_version(pg_url: str = DEFAULT_PG_URL) -> str | None:
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql("SHOW server_version").scalar()
    except Exception:  # noqa: BLE001 - only for the report header
        return None
    finally:
        engine.dispose()


def refresh_statistics(engine: Engine) -> None:
    """Update the query planner's statistics after a bulk load (VACUUM ANALYZE on PostgreSQL,
    which cannot run inside a transaction; ANALYZE on SQLite)."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    else:
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()


def log_warnings_to_stderr(*, redirect_stdio: bool = True) -> None:
    """Start Twisted logging for a bench server process: warnings and errors, on stderr."""
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    globalLogBeginner.beginLoggingTo([FilteringLogObserver(
        textFileLogObserver(sys.stderr), [LogLevelFilterPredicate(LogLevel.warn)])],
        redirectStandardIO=redirect_stdio)


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

    def report(self, as_json: bool) -> None:
        """The table on stdout; with ``as_json``, the JSON on stdout and the table on stderr."""
        if as_json:
            print(self.to_json())
            self.print_table(file=sys.stderr)
        else:
            self.print_table()


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
