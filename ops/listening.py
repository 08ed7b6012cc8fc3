"""Twisted's endpoint service, made to refuse to start deaf and to say where it listens.

The FastAGI server and the ops endpoint both listen on a configured port. A port that cannot
be opened must stop start-up (the composition root turns the ``CannotListenError`` into one
line naming the config key, see ``ops.startup``) instead of being logged while the server runs
without it; tests bind port 0 and need the port actually bound.
"""

from __future__ import annotations

from twisted.application.internet import StreamServerEndpointService
from twisted.internet import defer
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IStreamServerEndpoint,
)


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
