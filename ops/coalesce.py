"""Run now; if kicked while running, run once more after.

The MO handler, the outbox sender and the voice-warning dispatcher each poll on a timer and are
also kicked by events (a message stored, a slot freed). A kick that arrives while a round is
running must not start a second round beside it, nor be lost: it asks for one more round once
the current one ends, however many kicks came meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure


class Coalescer:
    """Runs ``run()`` (a Deferred or a plain value) one round at a time.

    A round that fails is not repeated at once: reporting the failure is the round's own job
    (its Failure is swallowed here), and the next kick, usually the caller's poll, tries
    again. With ``clock``, the round asked for while busy starts on the next reactor turn
    rather than from within the end of the previous one."""

    def __init__(self, run: Callable[[], object], clock: IReactorTime | None = None) -> None:
        self._run = run
        self._clock = clock
        self._busy = False
        self._again = False
        self._idle: list[defer.Deferred[None]] = []

    @property
    def busy(self) -> bool:
        """True while a round runs (or one more is due after it)."""
        return self._busy or self._again

    def kick(self) -> defer.Deferred[None]:
        """Start a round now, or once more after the current one; fires once idle."""
        waiter = self._waiter()
        if self._busy:
            self._again = True
        else:
            self._start()
        return waiter

    def when_idle(self) -> defer.Deferred[None]:
        """Fires once no round runs and none is due."""
        if not self.busy:
            return defer.succeed(None)
        return self._waiter()

    def _waiter(self) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        self._idle.append(d)
        return d

    def _start(self) -> None:
        self._busy = True
        self._again = False
        defer.maybeDeferred(self._run).addBoth(self._ended)

    def _ended(self, result: object) -> None:
        self._busy = False
        if isinstance(result, Failure):
            self._again = False
        if self._again:
            if self._clock is None:
                self._start()
            else:
                self._busy = True  # the next round is as good as running
                self._clock.callLater(0, self._start)
            return
        idle, self._idle = self._idle, []
        for d in idle:
            d.callback(None)
