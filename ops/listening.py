"""Twisted's endpoint service, made to refuse to start deaf and to say where it listens.

The FastAGI server and the ops endpoint both listen on a configured port. A port that cannot
be opened must stop start-up (the composition root turns the ``CannotListenError`` into one
line naming the config key, see ``ops.startup``) instead of being logged while the server runs
without it; tests bind port 0 and need the port actually bound.

``ReusePortEndpoint`` listens with SO_REUSEPORT, so that several server processes share one
FastAGI port (``fastagi.reuse_port``) and the kernel spreads new connections over them.
"""

from __future__ import annotations

import socket

from twisted.application.internet import StreamServerEndpointService
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorSocket,
    IStreamServerEndpoint,
)
from zope.interface import implementer


@implementer(IStreamServerEndpoint)
class ReusePortEndpoint:
    """A TCP server endpoint whose socket has SO_REUSEPORT: every process that listens on the
    same address and port this way (same user) gets its own accept queue, and Linux hashes
    each new connection to one of them. Twisted's endpoints cannot set the option before the
    bind, so the socket is made here and handed to the reactor (``adoptStreamPort``)."""

    def __init__(self, reactor: IReactorSocket, port: int, interface: str = "",
                 backlog: int = 50) -> None:
        self.reactor = reactor
        self.port = port
        self.interface = interface
        self.backlog = backlog

    def listen(self, factory: IProtocolFactory) -> defer.Deferred[IListeningPort]:
        return defer.execute(self._listen, factory)

    def _listen(self, factory: IProtocolFactory) -> IListeningPort:
        family = socket.AF_INET6 if ":" in self.interface else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Twisted's own ports
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self.interface, self.port))
            sock.listen(self.backlog)
            sock.setblocking(False)
            # The reactor takes a duplicate of the descriptor; ours is closed below.
            return self.reactor.adoptStreamPort(sock.fileno(), family, factory)
        except OSError as exc:
            raise CannotListenError(self.interface, self.port, exc) from None
        finally:
            sock.close()


class ListeningService(StreamServerEndpointService):
    """``StreamServerEndpointService`` whose failure to listen is raised by ``startService``
    (on every start, not only the first), with ``port`` (the ``IListeningPort`` while
    listening, else None) and ``whenListening()``. Subclasses may log in ``listening``."""

    def __init__(self, endpoint: IStreamServerEndpoint, factory: IProtocolFactory) -> None:
        super().__init__(endpoint, factory)
        self.port: IListeningPort | None = None
        self._waiters: list[defer.Deferred[IListeningPort]] = []

    def privilegedStartService(self) -> None:
        self._raiseSynchronously = True  # a taken port stops start-up, not a log line
        try:
            super().privilegedStartService()
        except BaseException:
            failed, self._waitingForPort = self._waitingForPort, None  # may start again later
            if failed is not None:
                failed.addCallback(self._bound)
            raise
        self._waitingForPort.addCallback(self._bound)

    def stopService(self) -> defer.Deferred[None]:
        self.port = None
        if self._waitingForPort is None:  # never started
            self.running = False
            return defer.succeed(None)
        stopped = super().stopService()
        self._waitingForPort = None  # so that a later start listens again
        return stopped

    def whenListening(self) -> defer.Deferred[IListeningPort]:
        """Fires with the listening port (tests bind port 0 and read ``getHost().port``)."""
        if self.port is not None:
            return defer.succeed(self.port)
        d: defer.Deferred[IListeningPort] = defer.Deferred()
        self._waiters.append(d)
        return d

    def listening(self, port: IListeningPort) -> None:
        """Called once bound (for a log line)."""

    def _bound(self, port: IListeningPort | None) -> IListeningPort | None:
        waiters, self._waiters = self._waiters, []
        if port is None:  # could not listen: already raised or logged
            for d in waiters:
                d.errback(RuntimeError(f"{self.name or 'service'} did not start listening"))
            return None
        self.port = port
        self.listening(port)
        for d in waiters:
            d.callback(port)
        return port
