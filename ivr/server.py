"""The FastAGI service of the server: flows by script name, metrics and call records.

``fastagi_service(config, db, metrics)`` returns a ``Service`` for the composition root
(``twistd.tac``) to attach; it listens on ``fastagi.host:fastagi.port`` when started.

Scripts (``SCRIPTS``): ``loyalty`` (the hotline), ``expiry-warning`` (the outbound warning
call), plus ``extra_flows``.

Every call accepted by the FastAGI server is recorded when it ends
(``core.service_desk.record_call_start`` + ``record_call_end`` in one unit of work) through
the database thread; the reactor never waits for that write.
"""

from __future__ import annotations

import gc
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from twisted.internet import defer, endpoints
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorTCP,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from core.clock import SecondsClock, utc_now
from core.config import Config, FastAGIConfig
from core.config_checks import check_fastagi_access
from core.domain import InvalidMsisdn
from core.metrics import Metrics
from core.numbering import NumberingPlan
from core.ports import UnitOfWork
from core.rules import ProgrammeRules
from core.service_desk import record_call_end, record_call_start
from ivr.agi import FastAGIFactory, Flow
from ivr.agi_channel import AGIChannel
from ivr.flows.calls import CallBook
from ivr.flows.expiry_warning import make_expiry_warning_flow
from ivr.flows.hotline import Hotline, hotline_flow
from ivr.peers import PeerGate
from ops.dbservice import DatabaseService
from ops.listening import ListeningService, ReusePortEndpoint
from prompts.presence import PromptPresence
from prompts.store import active_root

log = Logger()

HOTLINE_SCRIPT = "loyalty"
EXPIRY_WARNING_SCRIPT = "expiry-warning"


class FlowFactory(Protocol):
    """Builds the flow of one FastAGI script; ``book`` is shared with the call recorder."""

    def __call__(self, config: Config, db: DatabaseService, *, book: CallBook,
                 metrics: Metrics | None, clock: SecondsClock) -> Flow: ...


# FastAGI script name -> the factory of its flow.
SCRIPTS: dict[str, FlowFactory] = {
    HOTLINE_SCRIPT: hotline_flow,
    EXPIRY_WARNING_SCRIPT: make_expiry_warning_flow,
}


def record_call(uow: UnitOfWork, rules: ProgrammeRules, uniqueid: str, msisdn: str | None,
                script: str,
                started: datetime, menu_path: str, outcome: str, ended: datetime) -> None:
    """One finished call, stored with the core's two call-record use cases (database thread)."""
    call_id = record_call_start(uow, rules, uniqueid, msisdn, script, started)
    record_call_end(uow, rules, uniqueid, menu_path, outcome, ended, call_id=call_id)


class CallRecorder:
    """The FastAGI observer: metrics (calls_active, calls{script,outcome}, agi_think) and one
    call record per call.

    The record is written once, when the call ends (one database round trip per call, and the
    number stored is the member's once identified, else the caller id, masked by the core).
    The outcome stored is the flow's own (agent, closed, pin-locked) when the call ended
    normally, else the server's (hangup, timeout, error...)."""

    def __init__(self, db: DatabaseService | None, metrics: Metrics | None, book: CallBook,
                 clock: SecondsClock, numbering: NumberingPlan = NumberingPlan()) -> None:
        self.db = db
        self.numbering = numbering
        self.metrics = metrics
        self.book = book
        self.clock = clock
        self._writes: set[defer.Deferred[Any]] = set()

    def drain(self) -> defer.Deferred[Any]:
        """Fires once every call record write in flight now has finished."""
        return defer.DeferredList(list(self._writes), consumeErrors=True)

    def _now(self) -> datetime:
        return utc_now(self.clock)

    def call_started(self, channel: AGIChannel) -> None:
        self.book.open(channel, self._now())
        if self.metrics is not None:
            self.metrics.calls_active.inc()

    def call_ended(self, channel: AGIChannel, outcome: str) -> None:
        now = self._now()
        info = self.book.close(channel)
        if info is not None and outcome == "completed" and info.outcome:
            outcome = info.outcome
        if self.metrics is not None:
            self.metrics.calls_active.dec()
            self.metrics.calls.labels(script=channel.script or "-", outcome=outcome).inc()
        if self.db is None or info is None:
            return
        number = info.msisdn or _number(info.caller, self.numbering)
        d = self.db.run(record_call, info.uniqueid or "-", number, info.script[:30],
                        info.started, info.menu_path, outcome, now)
        d.addErrback(self._failed, info.uniqueid)
        self._writes.add(d)
        d.addBoth(lambda _: self._writes.discard(d))

    def think_time(self, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.agi_think.observe(seconds)

    @staticmethod
    def _failed(failure: Failure, uniqueid: str) -> None:
        log.failure("could not store the call record of {uniqueid}", failure=failure,
                    uniqueid=uniqueid)


def _number(callerid: str | None, numbering: NumberingPlan) -> str | None:
    if callerid is None:
        return None
    try:
        return numbering.normalise(callerid)
    except InvalidMsisdn:
        return callerid[:20]


class FastAGIService(ListeningService):
    """Listens with ``factory`` on ``endpoint`` while running (see ``ListeningService``:
    ``port``, ``whenListening()``, and a port that cannot be opened stops start-up)."""

    name = "fastagi"

    def __init__(self, endpoint: IStreamServerEndpoint, factory: FastAGIFactory, *,
                 recorder: CallRecorder, hotline: Hotline) -> None:
        super().__init__(endpoint, factory)
        self.factory: FastAGIFactory = factory
        self.recorder = recorder
        self.hotline = hotline

    def listening(self, port: IListeningPort) -> None:
        addr = port.getHost()
        log.info("FastAGI listening on {host}:{port}", host=addr.host, port=addr.port)


def fastagi_endpoint(reactor: IReactorTCP, fastagi: FastAGIConfig) -> IStreamServerEndpoint:
    """The TCP endpoint for ``[fastagi]`` host and port (the composition root's to build);
    with ``reuse_port``, one that several processes can share (``ReusePortEndpoint``)."""
    if fastagi.reuse_port:
        return ReusePortEndpoint(reactor, fastagi.port, interface=fastagi.host, backlog=1024)
    return endpoints.TCP4ServerEndpoint(reactor, fastagi.port, interface=fastagi.host,
                                        backlog=1024)


def tune_gc(threshold: int = 50_000) -> None:
    """Call once from the composition root after start-up: freeze what start-up allocated
    (modules, config, SQLAlchemy metadata) out of the collector's reach and collect the young
    generation less often. With thousands of calls in flight the default thresholds run a
    collection every 700 allocations and full collections walk the whole heap, stalling every
    call at once (see bench/ivr_bench.py)."""
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(threshold, second, third)


def fastagi_service(config: Config, db: DatabaseService | None, metrics: Metrics | None,
                    reactor: IReactorTime, endpoint: IStreamServerEndpoint,
                    extra_flows: Mapping[str, Flow] | None = None,
                    prompts: PromptPresence | None = None) -> FastAGIService:
    """The FastAGI server as a service listening on ``endpoint`` (see ``fastagi_endpoint``):
    hotline + expiry-warning (+ ``extra_flows``) flows, metrics and call records through
    ``db``. ``prompts`` tells the hotline which recordings the active set has (kept current
    by ``ivr.prompt_watch``); by default the active set is listed once, here (call this before
    the reactor runs: it reads a directory)."""
    gate = PeerGate(check_fastagi_access(config.fastagi), clock=reactor, metrics=metrics)
    book = CallBook()
    flows: dict[str, Flow] = {
        script: factory(config, db, book=book, metrics=metrics, clock=reactor)
        for script, factory in SCRIPTS.items()}
    hotline = flows[HOTLINE_SCRIPT]
    if isinstance(hotline, Hotline):
        hotline.prompts = prompts if prompts is not None else PromptPresence.scan(
            active_root(config.prompts.dir))
    flows.update(extra_flows or {})
    fa = config.fastagi
    recorder = CallRecorder(db, metrics, book, reactor,
                            ProgrammeRules.from_config(config).numbering)
    factory = FastAGIFactory(flows, max_calls=fa.max_calls, idle_timeout_s=fa.idle_timeout_s,
                             observer=recorder, clock=reactor, gate=gate)
    return FastAGIService(endpoint, factory, recorder=recorder, hotline=hotline)
