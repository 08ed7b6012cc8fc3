"""Helpers for FastAGI tests: a server on 127.0.0.1 port 0, a raw byte-level peer, an observer."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints, reactor
from twisted.internet.protocol import Protocol

from ivr.agi import FastAGIFactory
from ops.dbservice import DatabaseService

HEADER = (
    b"agi_network: yes\n"
    b"agi_network_script: loyalty\n"
    b"agi_request: agi://127.0.0.1:4573/loyalty\n"
    b"agi_channel: SIP/trunk-0000002a\n"
    b"agi_language: zh\n"
    b"agi_type: SIP\n"
    b"agi_uniqueid: 1700000000.42\n"
    b"agi_version: 20.5.0\n"
    b"agi_callerid: 13812345678\n"
    b"agi_calleridname: unknown\n"
    b"agi_dnid: 10086\n"
    b"agi_rdnis: unknown\n"
    b"agi_context: from-trunk\n"
    b"agi_extension: 10086\n"
    b"agi_priority: 1\n"
    b"agi_enhanced: 0.0\n"
    b"agi_accountcode: \n"
    b"agi_threadid: 139872\n"
    b"agi_arg_1: a:b c\n"
    b"\n"
)


class Recorder:
    """A CallObserver that remembers everything."""

    def __init__(self) -> None:
        self.started: list[object] = []
        self.ended: list[tuple[object, str]] = []
        self.think: list[float] = []
        self.ended_d: defer.Deferred[str] = defer.Deferred()

    def call_started(self, channel: object) -> None:
        self.started.append(channel)

    def call_ended(self, channel: object, outcome: str) -> None:
        self.ended.append((channel, outcome))
        if not self.ended_d.called:
            self.ended_d.callback(outcome)

    def think_time(self, seconds: float) -> None:
        self.think.append(seconds)


class RawPeer(Protocol):
    """Plays Asterisk byte by byte: the test decides every byte sent and checks every byte got."""

    def __init__(self) -> None:
        self.received = b""
        self._buffer = b""
        self._lines: defer.DeferredQueue[bytes] = defer.DeferredQueue()
        self.closed: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            self._lines.put(line + b"\n")

    def connectionLost(self, reason: object = None) -> None:
        self.closed.callback(None)

    def send(self, data: bytes) -> None:
        self.transport.write(data)

    async def line(self, timeout: float = 5.0) -> bytes:
        d = self._lines.get()
        d.addTimeout(timeout, reactor)
        return await d

    async def wait_closed(self, timeout: float = 5.0) -> None:
        d: defer.Deferred[None] = defer.Deferred()
        self.closed.addBoth(_pass_to(d))
        d.addTimeout(timeout, reactor)
        await d


def _pass_to(d: defer.Deferred[None]) -> Callable[[object], object]:
    def fire(result: object) -> object:
        if not d.called:
            d.callback(None)
        return result

    return fire


@pytest.fixture
def agi_server():
    """``start(flows, **factory_kwargs) -> (factory, port)``; listening stops after the test."""
    ports = []

    def start(flows: Mapping[str, Callable], **kwargs) -> tuple[FastAGIFactory, int]:
        kwargs.setdefault("clock", reactor)
        factory = FastAGIFactory(flows, **kwargs)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        ports.append(port)
        return factory, port.getHost().port

    yield start
    for port in ports:
        pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))


async def connect_raw(port: int) -> RawPeer:
    peer = RawPeer()
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    await endpoints.connectProtocol(endpoint, peer)
    return peer


def sleep(seconds: float) -> defer.Deferred[None]:
    from twisted.internet import task

    return task.deferLater(reactor, seconds, lambda: None)


@pytest_twisted.async_yield_fixture
async def db(store, rules):
    """A running database service on the test store (the voice-warning tests)."""
    service = DatabaseService(store, rules, reactor)
    service.startService()
    yield service
    await service.stopService()
