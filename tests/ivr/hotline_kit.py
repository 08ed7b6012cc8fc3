"""A hotline under test: the real FastAGI service over TCP on 127.0.0.1, a real DatabaseService
on the test database (SQLite, and PostgreSQL when configured) with the demo data loaded at a
fixed instant, and the call simulator as the caller.

``heard(result)`` reduces a transcript to what the caller heard, one token per event:
``"menu_main"`` (a prompt id), ``"#1000"`` (SAY NUMBER), ``"d:26112200001"`` (SAY DIGITS),
``"a:SF123"`` (SAY ALPHA), ``"date:2026-12-31"`` (SAY DATETIME, in the programme zone),
``"k:2"`` (keys pressed), ``"timeout"``, ``"set:NAME=value"``, ``"hangup"``, ``"missing:id"``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_twisted
from sqlalchemy import select
from twisted.internet import defer, reactor, task
from twisted.logger import globalLogPublisher

from core.accounts import balance
from core.config import Config
from core.demo import load_demo
from core.metrics import Metrics
from core.store import Store
from core.store.tables import calls
from harness.simulator import CallResult, simulate_call
from ivr.prompt_ids import HOTLINE
from ivr.server import fastagi_endpoint, fastagi_service
from ops.dbservice import DatabaseService
from prompts.catalogue_prompts import is_name_prompt_id
from prompts.manifest import load_manifest

SHANGHAI = ZoneInfo("Asia/Shanghai")
ZH_MEMBER = "13800138000"  # 张伟, zh, silver by default demo data (see core.demo)
EN_MEMBER = "15800158000"  # Alice Chen, en
DIAMOND = "13700137000"    # 王芳, zh, 16000 qualifying points
PIN = "1234"

MANIFEST = load_manifest()


class FixedTime:
    """The wall clock the services read (the network runs on the real reactor)."""

    def __init__(self, instant) -> None:
        self.now = instant.timestamp()

    def seconds(self) -> float:
        return self.now


def prompt_text_from_manifest(missing: frozenset[str] = frozenset()) -> Callable:
    """The simulator's ``prompt_text``: manifest words for ``loyalty/<id>``, the id itself for
    a reward's or courier's name (``reward_<code>``, ``courier_<code>``: not in the manifest);
    None (a missing file) for ids in ``missing`` and other ids the manifest lacks."""

    def text(name: str, language: str) -> str | None:
        subdir, _, prompt_id = name.partition("/")
        if subdir != "loyalty" or prompt_id in missing:
            return None
        if is_name_prompt_id(prompt_id):
            return prompt_id
        return MANIFEST.text(prompt_id, language)

    return text


def token(event: Any) -> str | None:
    k, v = event.kind, event.value
    if k == "prompt":
        return v.split("/", 1)[1] if v.startswith("loyalty/") else v
    if k == "number":
        return f"#{v}"
    if k == "digits":
        return f"d:{v}"
    if k == "alpha":
        return f"a:{v}"
    if k == "datetime":
        return "date:" + datetime.fromtimestamp(int(v), SHANGHAI).date().isoformat()
    if k == "keys":
        return f"k:{v}"
    if k == "variable":
        return f"set:{v}"
    if k == "missing-prompt":
        return "missing:" + v.split("/", 1)[-1]
    if k in ("timeout", "hangup", "answer"):
        return k
    return None


def after(tokens: list[str], first: str) -> list[str]:
    """The tokens from the first ``first`` on."""
    return tokens[tokens.index(first):]


def heard(result: CallResult) -> list[str]:
    return [t for t in (token(e) for e in result.transcript) if t is not None]


def prompts_heard(result: CallResult) -> list[str]:
    return [t for t in heard(result) if t.split(":")[0] not in ("k", "set", "a", "d", "date")
            and not t.startswith("#") and t not in ("timeout", "hangup", "answer")]


@dataclass
class Rig:
    store: Store
    rules: Any
    now: datetime
    db: DatabaseService
    metrics: Metrics
    service: Any
    port: int

    async def call(self, callerid: str | None = ZH_MEMBER, keys: str = "", *,
                   language: str = "zh", missing: frozenset[str] = frozenset(),
                   **kwargs: Any) -> CallResult:
        result = await simulate_call("127.0.0.1", self.port, callerid=callerid, keys=keys,
                                     language=language, timeout_s=20,
                                     prompt_text=prompt_text_from_manifest(missing), **kwargs)
        played = {p for p in prompts_heard(result)
                  if not p.startswith("missing") and not is_name_prompt_id(p)}
        assert played <= HOTLINE, f"prompts outside ivr.prompt_ids.HOTLINE: {played - HOTLINE}"
        await self.settle()
        return result

    async def settle(self) -> None:
        """Wait until the call records of finished calls are written."""
        await self.service.recorder.drain()

    def run(self, use_case, *args, **kwargs):
        with self.store.unit_of_work() as uow:
            return use_case(uow, self.rules, *args, **kwargs)

    def balance(self, msisdn: str) -> int:
        return self.run(balance, msisdn, self.now).points

    def outbox(self, msisdn: str) -> list[dict[str, Any]]:
        with self.store.unit_of_work(write=False) as uow:
            return uow.outbox.outbox_for(msisdn)

    def call_records(self) -> list[dict[str, Any]]:
        with self.store.unit_of_work(write=False) as uow:
            return [dict(r._mapping) for r in uow.conn.execute(select(calls))]

    def ledger(self, msisdn: str) -> list[Any]:
        with self.store.unit_of_work(write=False) as uow:
            return uow.members.history(msisdn, 0, 100)


def make_rig(database_url: str, config: Config, rules: Any, now: datetime,
             **fastagi: Any) -> tuple[Rig, Callable[[], None]]:
    store = Store(database_url)
    with store.unit_of_work() as uow:
        load_demo(uow, rules, now)
    db = DatabaseService(store, rules, reactor)
    db.startService()
    metrics = Metrics()
    cfg = config.replace("fastagi", host="127.0.0.1", port=0, **fastagi)
    service = fastagi_service(cfg, db, metrics, reactor, fastagi_endpoint(reactor, cfg.fastagi))
    service.hotline.now = lambda: now
    service.startService()
    port = service.port.getHost().port

    def stop() -> None:
        pytest_twisted.blockon(service.stopService())
        pytest_twisted.blockon(db.stopService())

    return Rig(store, rules, now, db, metrics, service, port), stop


@pytest.fixture
def rig(database_url, config, rules, now):
    r, stop = make_rig(database_url, config, rules, now)
    yield r
    stop()


@pytest.fixture
def rig_factory(database_url, config, rules, now):
    """``make(**fastagi_overrides) -> Rig`` for tests that need other settings."""
    stops = []

    def make(**fastagi: Any) -> Rig:
        r, stop = make_rig(database_url, config, rules, now, **fastagi)
        stops.append(stop)
        return r

    yield make
    for stop in stops:
        stop()


@pytest.fixture
def logged_failures():
    """Every event logged with a failure (a traceback) while the test runs."""
    events: list[dict] = []

    def observe(event: dict) -> None:
        if "log_failure" in event:
            events.append(event)

    globalLogPublisher.addObserver(observe)
    yield events
    globalLogPublisher.removeObserver(observe)


class SlowOrRacyDB:
    """Wraps the DatabaseService: ``delay[name] = s`` holds a use case's result for s seconds;
    ``before[name] = fn`` runs ``fn(uow, rules)`` (in its own unit of work) just before it."""

    def __init__(self, db: DatabaseService) -> None:
        self.db = db
        self.rules = db.rules
        self.delay: dict[str, float] = {}
        self.before: dict[str, Callable] = {}

    def run(self, use_case, *args, **kwargs) -> defer.Deferred:
        name = use_case.__name__
        first = self.db.run(self.before[name]) if name in self.before else defer.succeed(None)
        d = first.addCallback(lambda _: self.db.run(use_case, *args, **kwargs))
        if name in self.delay:
            d.addCallback(lambda r: task.deferLater(reactor, self.delay[name], lambda: r))
        return d


def wrap_db(rig: Rig) -> SlowOrRacyDB:
    proxy = SlowOrRacyDB(rig.db)
    rig.service.hotline.db = proxy
    return proxy
