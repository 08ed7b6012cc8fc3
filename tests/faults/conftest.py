"""Fixtures for the fault and fuzz tests: a FastAGI server that exposes its connections, an
SMSC simulator with an ESME bound to it, and a guard that fails a test when anything logs a
failure (an exception that escaped a protocol, an unhandled error in a Deferred...)."""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints, protocol, reactor, task
from twisted.logger import globalLogPublisher

from harness.smsc_simulator import SMSCSimulator
from ivr.agi import FastAGIFactory, FastAGIProtocol
from sms.pdu import PduReader, decode_pdu, encode_pdu
from sms.session import ESMEService
from tests.sms.conftest import Cfg as SmsTestConfig
from tests.sms.conftest import Inbox


def examples(n: int) -> int:
    """Hypothesis example counts, scaled by LOYALTY_FUZZ_SCALE (e.g. 20 for a nightly run)."""
    return max(1, int(n * float(os.environ.get("LOYALTY_FUZZ_SCALE", "1"))))


def sleep(seconds: float) -> defer.Deferred:
    return task.deferLater(reactor, seconds, lambda: None)


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, step: float = 0.01):
    """Poll ``predicate`` on the reactor until it holds; AssertionError after ``timeout``."""
    deadline = reactor.seconds() + timeout
    while not predicate():
        if reactor.seconds() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await sleep(step)


# -- logged failures --------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _frozen_heap():
    """Move what exists now out of the collector's sight, so the full collection after each
    test (see below) only scans what the tests here create: 10x cheaper."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture(autouse=True)
def no_logged_errors():
    """Every test here must run without a logged failure: an exception escaping
    ``dataReceived``, an unhandled error in a Deferred, a flow crash."""
    errors: list[dict] = []

    def observer(event: dict) -> None:
        if event.get("log_failure") is not None and not event.get("expected_failure"):
            errors.append(event)

    globalLogPublisher.addObserver(observer)
    yield errors
    gc.collect()  # unhandled-error Deferreds report when collected
    globalLogPublisher.removeObserver(observer)
    assert not [(e.get("log_format"), e["log_failure"].getTraceback()) for e in errors]


# -- FastAGI ----------------------------------------------------------------------------------


class Observer:
    """A CallObserver recording call outcomes."""

    def __init__(self) -> None:
        self.started = 0
        self.outcomes: list[str] = []

    def call_started(self, channel: object) -> None:
        self.started += 1

    def call_ended(self, channel: object, outcome: str) -> None:
        self.outcomes.append(outcome)

    def think_time(self, seconds: float) -> None:
        pass


@dataclass
class AGIServer:
    factory: FastAGIFactory
    port: int
    observer: Observer
    protocols: list[FastAGIProtocol] = field(default_factory=list)

    @property
    def open_connections(self) -> list[FastAGIProtocol]:
        return [p for p in self.protocols if not p.closed]


@pytest.fixture
def agi():
    """``start(flows, sndbuf=None, **factory_kwargs) -> AGIServer`` on 127.0.0.1, port 0.

    ``sndbuf`` shrinks SO_SNDBUF of every accepted socket (so a peer that stops reading fills
    the buffers quickly). Every server connection is recorded in ``AGIServer.protocols``."""
    ports = []

    def start(flows: Mapping[str, Callable], sndbuf: int | None = None, **kw: Any) -> AGIServer:
        observer = kw.pop("observer", None) or Observer()
        kw.setdefault("clock", reactor)
        factory = FastAGIFactory(flows, observer=observer, **kw)
        server = AGIServer(factory, 0, observer)
        build = factory.buildProtocol

        def build_protocol(addr: object) -> FastAGIProtocol:
            proto = build(addr)
            server.protocols.append(proto)
            if sndbuf is not None:
                made = proto.connectionMade

                def connection_made() -> None:
                    import socket

                    proto.transport.getHandle().setsockopt(
                        socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
                    made()

                proto.connectionMade = connection_made
            return proto

        factory.buildProtocol = build_protocol
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        ports.append(port)
        server.port = port.getHost().port
        return server

    yield start
    for port in ports:
        pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))


# -- SMPP -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cfg(SmsTestConfig):
    """The SMS tests' session settings, with faster reconnects and longer keepalives."""

    enquire_link_s: float = 30.0
    dead_link_s: float = 90.0
    reconnect_min_s: float = 0.02
    reconnect_max_s: float = 0.2
    unbind_timeout_s: float = 0.3
    throttle_pause_s: float = 0.02
    max_timeouts: int = 3


@pytest.fixture
def sim():
    s = SMSCSimulator("loyalty", "secret", receipts=False)
    s.listen(0)
    yield s
    pytest_twisted.blockon(s.stop())


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
def esme_to():
    """``esme_to(port, inbox, **cfg) -> started ESMEService``; stopped after the test."""
    started: list[ESMEService] = []

    def make(port: int, inbox: Inbox, **overrides: Any) -> ESMEService:
        cfg = replace(Cfg(), **overrides)
        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        svc = ESMEService(cfg, endpoint, inbox.on_deliver, inbox.on_receipt, clock=reactor)
        svc.startService()
        started.append(svc)
        return svc

    yield make
    for svc in started:
        if svc.running:
            pytest_twisted.blockon(svc.stopService())


# -- a raw SMSC -------------------------------------------------------------------------------


class RawSMSC(protocol.Protocol):
    """Binds whoever asks, then lets the test write any bytes and read every PDU sent back."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.reader = PduReader()
        self.got: list = []
        self.closed = False
        self.seq = 0x10000

    def dataReceived(self, data: bytes) -> None:
        for frame in self.reader.feed(data):
            assert isinstance(frame, bytes), "the ESME sent a bad frame"
            pdu = decode_pdu(frame)  # whatever the ESME sends is valid SMPP
            if pdu.command == "bind_transceiver":
                self.transport.write(encode_pdu("bind_transceiver_resp", pdu.sequence,
                                                system_id="RAW"))
                self.hub.sessions.append(self)
            elif pdu.command == "unbind":
                self.transport.write(encode_pdu("unbind_resp", pdu.sequence))
            elif pdu.command == "enquire_link":
                self.transport.write(encode_pdu("enquire_link_resp", pdu.sequence))
            else:
                self.got.append(pdu)

    def connectionLost(self, reason: object = None) -> None:
        self.closed = True

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    async def exchange(self, frame: bytes) -> tuple[list, bool]:
        """Write ``frame`` then an enquire_link barrier; return the PDUs answered before the
        barrier's response, and whether the connection closed instead."""
        self.got.clear()
        barrier = self.next_seq()
        self.transport.write(frame + encode_pdu("enquire_link", barrier))

        def done() -> bool:
            return self.closed or any(
                p.command == "enquire_link_resp" and p.sequence == barrier for p in self.got)

        await wait_until(done, timeout=3, step=0.002)
        answers = []
        for p in self.got:
            if p.command == "enquire_link_resp" and p.sequence == barrier:
                return answers, False
            answers.append(p)
        return answers, True


class Hub(protocol.ServerFactory):
    def __init__(self) -> None:
        self.sessions: list[RawSMSC] = []

    def buildProtocol(self, addr: object) -> RawSMSC:
        return RawSMSC(self)

    async def session(self) -> RawSMSC:
        await wait_until(lambda: self.sessions and not self.sessions[-1].closed, timeout=3)
        await sleep(0.002)  # let the bind_transceiver_resp reach the ESME
        return self.sessions[-1]


@pytest.fixture
def raw_hub():
    """``(hub, port)``: a raw SMSC listening on 127.0.0.1 (see RawSMSC)."""
    hub = Hub()
    port = reactor.listenTCP(0, hub, interface="127.0.0.1")
    yield hub, port.getHost().port
    for s in hub.sessions:
        if not s.closed:
            s.transport.abortConnection()
    pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))
