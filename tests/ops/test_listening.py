"""The listening service under FastAGI and ops: refuses to start deaf, restarts, says where."""

import pytest
import pytest_twisted
from twisted.internet import endpoints, protocol, reactor
from twisted.internet.error import CannotListenError

from ops.listening import ListeningService


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
