"""SMPP test helpers: a simulator on 127.0.0.1 port 0 and an ESME service bound to it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints, reactor, task
from twisted.internet.testing import StringTransport

from core.demo import load_demo
from harness.smsc_simulator import SMSCSimulator
from sms.pdu import decode_pdu, encode_pdu
from sms.session import ESMEFactory, ESMEService
from sms.session_settings import SessionSettings
from tests.sms.channel_helpers import NOW, Channel


@dataclass(frozen=True)
class Cfg(SessionSettings):
    """The SMS tests' session settings: small window, quick reconnects, no pacing."""

    system_id: str = "loyalty"
    password: str = "secret"
    system_type: str = ""
    address_range: str = ""
    window: int = 4
    max_submit_rate: float = 0.0  # unlimited unless a test says otherwise
    response_timeout_s: float = 2.0
    enquire_link_s: float = 5.0
    dead_link_s: float = 15.0
    reconnect_min_s: float = 0.05
    reconnect_max_s: float = 0.4
    source_addr: str = "10086"
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    unbind_timeout_s: float = 0.5
    throttle_pause_s: float = 1.0


class Inbox:
    """on_deliver / on_receipt callbacks that record and answer ``status`` (or a Deferred)."""

    def __init__(self) -> None:
        self.mo: list[Any] = []
        self.receipts: list[Any] = []
        self.status: Any = 0

    def on_deliver(self, mo: Any) -> Any:
        self.mo.append(mo)
        return self.status() if callable(self.status) else self.status

    def on_receipt(self, receipt: Any) -> Any:
        self.receipts.append(receipt)
        return 0


def bound_session(clock: task.Clock, config: SessionSettings,
                  transport: StringTransport | None = None) -> tuple[Any, StringTransport]:
    """An ESME protocol on ``clock`` and a fake transport, bound (its bind answered)."""
    proto = ESMEFactory(config, lambda mo: 0, lambda r: 0, clock=clock).buildProtocol(None)
    transport = transport if transport is not None else StringTransport()
    proto.makeConnection(transport)
    bind = decode_pdu(transport.value())
    transport.clear()
    proto.dataReceived(encode_pdu("bind_transceiver_resp", bind.sequence, system_id="x"))
    assert proto.is_bound
    return proto, transport


def sleep(seconds: float) -> defer.Deferred:
    return task.deferLater(reactor, seconds, lambda: None)


@pytest.fixture
def sim():
    s = SMSCSimulator("loyalty", "secret")
    s.listen(0)
    yield s
    pytest_twisted.blockon(s.stop())


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
def make_esme(sim, inbox):
    """make_esme(**cfg_overrides) -> started ESMEService (call ``await esme.whenBound()``)."""
    started: list[ESMEService] = []

    def make(**overrides: Any) -> ESMEService:
        cfg = replace(Cfg(), **overrides)
        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", sim.port)
        svc = ESMEService(cfg, endpoint, inbox.on_deliver, inbox.on_receipt, clock=reactor)
        svc.startService()
        started.append(svc)
        return svc

    yield make
    for svc in started:
        if svc.running:
            pytest_twisted.blockon(svc.stopService())


@pytest.fixture(autouse=True)
def no_logged_errors():
    """Fail a test when anything logs a failure (e.g. 'Unhandled error in Deferred')."""
    import gc

    from twisted.logger import globalLogPublisher

    errors: list[dict] = []

    def observer(event: dict) -> None:
        if event.get("log_failure") is not None and not event.get("expected_failure"):
            errors.append(event)

    globalLogPublisher.addObserver(observer)
    yield errors
    gc.collect()  # unhandled-error Deferreds report when collected
    globalLogPublisher.removeObserver(observer)
    assert not [e["log_failure"] for e in errors]


@pytest.fixture
def demo(store, rules):
    """The demo data set, loaded at the channel tests' fixed instant."""
    with store.unit_of_work() as uow:
        load_demo(uow, rules, NOW)
    return store


@pytest.fixture
def channels(sim, demo, rules, config):
    """Make composed SMS channels on the demo data (stopped after the test)."""
    made: list[Channel] = []

    def make(**kwargs) -> Channel:
        kwargs.setdefault("mo_rate_limit", 1000)
        ch = Channel(sim, demo, rules, config, **kwargs)
        made.append(ch)
        return ch

    yield make
    for ch in made:
        pytest_twisted.blockon(defer.ensureDeferred(ch.stop()))
