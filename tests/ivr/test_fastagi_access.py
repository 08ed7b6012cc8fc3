"""Only our Asterisk may speak FastAGI: a peer outside ``fastagi.allowed_peers`` is closed at
once, before anything is read or played, and nothing about any member is looked up."""

# ruff: noqa: F811 - pytest fixtures imported from tests.ivr.hotline_kit
from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import endpoints, reactor
from twisted.logger import formatEvent, globalLogPublisher

from core.config import ConfigError
from core.metrics import Metrics
from ivr.server import fastagi_endpoint, fastagi_service
from tests.ivr.conftest import HEADER, RawPeer
from tests.ivr.hotline_kit import ZH_MEMBER, heard, rig_factory  # noqa: F401 - fixtures


async def connect_from(source: str, port: int) -> RawPeer:
    """A raw peer whose socket is bound to ``source`` (any 127.x address is loopback)."""
    peer = RawPeer()
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port,
                                            bindAddress=(source, 0))
    await endpoints.connectProtocol(endpoint, peer)
    return peer


def count_database_use(rig) -> list[str]:
    """Every use case the FastAGI side runs from now on, by name."""
    used: list[str] = []
    real_run = rig.db.run

    def run(use_case, *args, **kwargs):
        used.append(use_case.__name__)
        return real_run(use_case, *args, **kwargs)

    rig.db.run = run
    return used


@pytest.fixture
def log_lines():
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    yield lambda: [formatEvent(e) for e in events]
    globalLogPublisher.removeObserver(events.append)


def metric(rig, name: str) -> float:
    return rig.metrics.registry.get_sample_value(name) or 0.0


@pytest_twisted.ensureDeferred
async def test_a_peer_outside_allowed_peers_is_closed_without_hearing_anything(
        rig_factory, log_lines):
    rig = rig_factory(allowed_peers=("127.0.0.1",))
    used = count_database_use(rig)
    for _ in range(3):  # a stranger trying again and again
        peer = await connect_from("127.0.0.2", rig.port)
        peer.send(HEADER.replace(b"13812345678", ZH_MEMBER.encode()))
        await peer.wait_closed()
        assert peer.received == b""  # not one AGI command: no ANSWER, no prompt
    assert used == [] and rig.call_records() == []
    assert metric(rig, "loyalty_fastagi_refused_peers_total") == 3
    refused = [line for line in log_lines() if "refused" in line and "FastAGI" in line]
    assert len(refused) == 1 and "127.0.0.2" in refused[0]  # once, not per connection

    result = await rig.call(ZH_MEMBER, "2T")  # our Asterisk, on 127.0.0.1, is served
    assert "bal_is" in heard(result)
    assert used and len(rig.call_records()) == 1
    assert metric(rig, "loyalty_fastagi_refused_peers_total") == 3


@pytest_twisted.ensureDeferred
async def test_a_cidr_admits_the_whole_range(rig_factory):
    rig = rig_factory(allowed_peers=("127.0.0.0/30",))
    peer = await connect_from("127.0.0.2", rig.port)
    peer.send(HEADER.replace(b"13812345678", ZH_MEMBER.encode()))
    assert (await peer.line()).startswith(b"ANSWER")
    peer.transport.loseConnection()
    await peer.wait_closed()
    await rig.settle()


@pytest.mark.parametrize("fastagi, key", [
    (dict(host="0.0.0.0"), "fastagi.allowed_peers: required when fastagi.host"),
    (dict(allowed_peers=("10.0.0.0/8", "not-an-address")), "fastagi.allowed_peers"),
])
def test_the_server_refuses_to_start_without_a_safe_peer_list(config, fastagi, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        fastagi_service(config.replace("fastagi", port=0, **fastagi), None, Metrics(), reactor,
                        fastagi_endpoint(reactor, config.fastagi))
