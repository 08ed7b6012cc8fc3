"""The listening service under FastAGI and ops: refuses to start deaf, restarts, says where."""

import pytest
import pytest_twisted
from twisted.internet import endpoints, protocol, reactor
from twisted.internet.error import CannotListenError

from core.config_checks import reuse_port_supported
from ops.listening import ListeningService, ReusePortEndpoint


def service_on(port: int) -> ListeningService:
    endpoint = endpoints.TCP4ServerEndpoint(reactor, port, interface="127.0.0.1")
    return ListeningService(endpoint, protocol.Factory.forProtocol(protocol.Protocol))


@pytest_twisted.ensureDeferred
async def test_a_taken_port_stops_start_and_a_stopped_service_listens_again():
    first = service_on(0)
    first.startService()
    port = (await first.whenListening()).getHost().port
    assert first.port is not None

    second = service_on(port)
    with pytest.raises(CannotListenError):
        second.startService()
    assert second.port is None

    await first.stopService()
    assert first.port is None
    second.startService()  # the port is free now: the same service starts again
    assert (await second.whenListening()).getHost().port == port
    await second.stopService()
    second.startService()
    assert (await second.whenListening()).getHost().port == port
    await second.stopService()


class Hello(protocol.Protocol):
    def connectionMade(self) -> None:
        self.transport.write(self.factory.greeting)
        self.transport.loseConnection()


def greeter(greeting: bytes) -> protocol.Factory:
    factory = protocol.Factory.forProtocol(Hello)
    factory.greeting = greeting
    return factory


async def greeting_from(port: int) -> bytes:
    from twisted.internet.defer import Deferred

    got: Deferred[bytes] = Deferred()

    class Reader(protocol.Protocol):
        data = b""

        def dataReceived(self, data: bytes) -> None:
            self.data += data

        def connectionLost(self, reason: object = None) -> None:
            got.callback(self.data)

    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    await endpoints.connectProtocol(endpoint, Reader())
    return await got


@pytest.mark.skipif(not reuse_port_supported(), reason="SO_REUSEPORT spreads only on Linux")
@pytest_twisted.ensureDeferred
async def test_two_servers_share_one_port_with_reuse_port_and_both_get_connections():
    first = ListeningService(ReusePortEndpoint(reactor, 0, "127.0.0.1"), greeter(b"one"))
    first.startService()
    port = (await first.whenListening()).getHost().port
    second = ListeningService(ReusePortEndpoint(reactor, port, "127.0.0.1"), greeter(b"two"))
    second.startService()  # the same port: no CannotListenError
    assert (await second.whenListening()).getHost().port == port
    plain = service_on(port)  # a process without the option is still refused the port
    with pytest.raises(CannotListenError):
        plain.startService()

    # The kernel hashes each connection (by its source port) to one of the two listeners.
    heard = {await greeting_from(port) for _ in range(40)}
    assert heard == {b"one", b"two"}

    await first.stopService()  # the other goes on alone
    assert {await greeting_from(port) for _ in range(5)} == {b"two"}
    await second.stopService()


def test_reuse_port_on_a_port_taken_without_it_is_a_cannot_listen_error():
    taken = reactor.listenTCP(0, protocol.Factory.forProtocol(protocol.Protocol),
                              interface="127.0.0.1")
    try:
        service = ListeningService(
            ReusePortEndpoint(reactor, taken.getHost().port, "127.0.0.1"),
            protocol.Factory.forProtocol(protocol.Protocol))
        with pytest.raises(CannotListenError):
            service.startService()
        assert service.port is None
    finally:
        taken.stopListening()
