"""The SMS channel's database lane: one round at a time, each taking everything pending.

Storing MO, handling them and recording what became of MT (submit outcomes, receipts) are
separate units of work, and each used to go to the database thread on its own: the thread ran
whichever came next, each with the handful of items pending when it was *queued*, so under
load every batch stayed small (about 9 MO) and the fixed cost of a unit of work (statements,
commit, a thread hop) was paid per few messages. A unit of work costs about 1,200 us of CPU
per MO in batches of one, 240 in batches of ten and 160 in batches of fifty
(``bench.sms_db_bench``).

Here the parts of the channel are *sources* of one lane. A round asks every source, when it
starts, for what it has pending (``take``: a list of steps, possibly empty), runs all the
steps in one trip to the database thread (``DatabaseService.run_steps``: each step its own
transaction but the front ones, below; a failing step rolled back alone) and hands each
source its results (``done``) as soon as its last step is committed, or, if the whole trip
failed first, the failure (``failed``). While a round runs, new work waits for the next
one, so a round takes everything that arrived during the previous one.

Sources added with ``front=True`` (storing MO, recording MT events: what the SMSC waits on
before it may send more, since its window counts unanswered deliver_sm) run first in every
round, in one transaction (``run_steps(together=)``: their steps must not commit), and are
answered before the later steps (handling) run; a deliver_sm no longer waits for the
handling of its whole round, which at an SMSC window of 50 was the limit.

Rounds are work-conserving under load and coalesced when the load is light: a round starts
at once (or, with one running, as soon as it ends) when the sources hold ``round_items``
items or the last round took that many, and otherwise no sooner than ``round_wait_s`` after
the last round began. Without the wait a moderate load (1,000 MO/s) kept the database thread
busy with rounds of one or two messages, each paying a round's whole fixed cost: the process
used a full core, as at its limit. With 5 ms and 16 items it uses 55-70 % of that, for about
1 ms more per message at the median; a loaded lane's rounds take more than 16 items and
never wait. But an SMSC window smaller than ``round_items`` (it holds at most that many
deliver_sm unanswered) means every round waits: at a window of 10 the rate fell by a third.
The ESME cannot see that window, so the wait is off unless configured (``smpp.round_wait_ms``;
``docs/performance.md``, "Coalescing the lane's rounds").
"""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ops.dbservice import DatabaseService, Step, StepFailed

log = Logger()

__all__ = ["DatabaseLane", "LaneSource", "StepFailed", "Waiting", "step_failure"]

T = TypeVar("T")


class LaneSource(Protocol):
    @property
    def pending(self) -> bool:
        """True when ``take`` would give steps."""

    @property
    def backlog(self) -> int:
        """How many items (messages, events) are waiting for the next round; 0 for a source
        whose work is counted by another (handling what the store source took)."""

    def take(self) -> list[Step]:
        """The steps for this round (what is pending now; it is no longer pending). A source
        that is not in front may be asked again before it gets its last round's results."""

    def done(self, results: list[Any]) -> None:
        """The results of this source's steps, in order (``StepFailed`` for a failed one),
        one call per ``take`` that gave steps, in the same order."""

    def failed(self, failure: Failure) -> None:
        """The round's trip to the database failed as a whole."""


def step_failure(result: StepFailed) -> Failure:
    """A failed step as a Failure (with the traceback the step raised)."""
    return Failure(result.error, type(result.error), result.error.__traceback__)


class Waiting(Generic[T]):
    """The items a lane source has for the next round, each with the Deferred its adder
    got, and those the running round took (at most ``limit`` a round)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.items: list[tuple[T, defer.Deferred]] = []
        self.taken: list[tuple[T, defer.Deferred]] = []

    def add(self, item: T) -> defer.Deferred:
        """Fires with the item's result (``answer``) once a round has run it."""
        d: defer.Deferred = defer.Deferred()
        self.items.append((item, d))
        return d

    @property
    def pending(self) -> bool:
        return bool(self.items)

    def __len__(self) -> int:
        """The items waiting (not those the running round took)."""
        return len(self.items)

    @property
    def busy(self) -> bool:
        """Items waiting or being run."""
        return bool(self.items or self.taken)

    def take(self) -> list[T]:
        self.taken, self.items = self.items[:self.limit], self.items[self.limit:]
        return [item for item, _ in self.taken]

    def answer(self, results: list[Any] | Failure) -> None:
        """Each taken item's result, in order; or one failure for them all."""
        taken, self.taken = self.taken, []
        for i, (_, d) in enumerate(taken):
            if isinstance(results, Failure):
                d.errback(results)
            else:
                d.callback(results[i])


class DatabaseLane:
    """Runs the rounds of its sources' steps, one round at a time (see the module doc)."""

    def __init__(self, db: DatabaseService, clock: IReactorTime, *, round_wait_s: float = 0.0,
                 round_items: int = 1) -> None:
        self.db = db
        self.clock = clock
        self.round_wait_s = round_wait_s
        self.round_items = round_items
        self._started = float("-inf")  # when the last round began (clock seconds)
        self._last_items = 0  # how many items the sources had for it
        self.sources: list[LaneSource] = []
        self._front = 0  # sources[:_front] were added with front=True
        self.rounds = 0  # trips to the database thread (for tests and the bench)
        self._running = False
        self._call: IDelayedCall | None = None
        self._idle: list[defer.Deferred[None]] = []

    def add(self, source: LaneSource, *, front: bool = False) -> None:
        """A source of every round; ``front``: its steps go before those of the others."""
        if front:
            self.sources.insert(self._front, source)
            self._front += 1
        else:
            self.sources.append(source)

    @property
    def busy(self) -> bool:
        return self._running or self._call is not None or any(s.pending for s in self.sources)

    def kick(self) -> None:
        """Run a round on the next reactor turn (everything of this turn goes together) or,
        under a light load (fewer than ``round_items`` items waiting and in the last round),
        ``round_wait_s`` after the last round began; with a round running, when it ends."""
        if self._running:
            return
        if self._call is not None:
            # Called for every MO and MT event: with no wait configured, nothing more to do.
            if (self.round_wait_s > 0 and self._call.getTime() > self.clock.seconds()
                    and self._full()):
                self._call.reset(0)  # enough waiting now: no need to wait any longer
            return
        wait = 0.0 if self._full() else self._started + self.round_wait_s - self.clock.seconds()
        self._call = self.clock.callLater(max(0.0, wait), self._round)

    def _full(self) -> bool:
        """Whether the next round should start without waiting: the lane is loaded (its
        last round took ``round_items`` or more) or that many items wait now."""
        if self.round_wait_s <= 0 or self._last_items >= self.round_items:
            return True
        return sum(source.backlog for source in self.sources) >= self.round_items

    def when_idle(self) -> defer.Deferred[None]:
        """Fires once no round runs and no source has anything pending."""
        if not self.busy:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._idle.append(d)
        return d

    def _round(self) -> None:
        self._call = None
        if self._running:
            return
        items = sum(source.backlog for source in self.sources)
        taken: list[tuple[LaneSource, list[Step]]] = []
        front = 0  # how many of taken are front sources (they come first: see ``add``)
        for at, source in enumerate(self.sources):
            steps = source.take() if source.pending else []
            if steps:
                taken.append((source, steps))
                front += at < self._front
        if not taken:
            self._settled()
            return
        self._running = True
        self._started = self.clock.seconds()
        self._last_items = items
        self.rounds += 1
        # The front sources are answered as soon as their steps have ended.
        early = sum(len(steps) for _, steps in taken[:front])
        answered: set[int] = set()

        def on_early(results: list[Any]) -> None:
            at = 0
            for i, (source, steps) in enumerate(taken[:front]):
                answered.add(i)
                self._answer(source, "done", results[at:at + len(steps)])
                at += len(steps)

        # The front steps share one transaction (a failing one is still rolled back alone:
        # ``run_steps``), since they are answered together anyway.
        d = self.db.run_steps([step for _, steps in taken for step in steps], early, on_early,
                              together=early)
        d.addBoth(self._ended, taken, front, answered)

    def _answer(self, source: LaneSource, how: str, result: Any) -> None:
        try:
            getattr(source, how)(result)
        except Exception:  # noqa: BLE001 - one source's bug must not stall the others
            log.failure("SMS lane: a source failed to take its results")

    def _ended(self, result: Any, taken: list[tuple[LaneSource, list[Step]]], front: int,
               answered: set[int]) -> None:
        self._running = False
        answers: tuple[list, list] = ([], [])  # front, then back: (source, how, what)
        at = 0
        for i, (source, steps) in enumerate(taken):
            if i not in answered:  # not answered early (or the trip failed first)
                if isinstance(result, Failure):
                    answer = (source, "failed", result)
                else:
                    answer = (source, "done", result[at:at + len(steps)])
                answers[i >= front].append(answer)
            at += len(steps)
        # The front sources first (the SMSC waits on them, and each is answered before it is
        # asked again), then the next round: what arrived during the trip goes to the
        # database thread before the other results are handed out (submitting the replies
        # takes the reactor a while, which the thread would otherwise spend idle: about a
        # fifth of its time under load). So a back source may be asked for its next steps
        # before it gets the results of its last ones. (Only with enough waiting: a light
        # load waits for ``round_wait_s``, below.)
        for answer in answers[0]:
            self._answer(*answer)
        if any(s.pending for s in self.sources) and self._full():
            if self._call is not None:
                self._call.cancel()
                self._call = None
            self._round()
        for answer in answers[1]:
            self._answer(*answer)
        if any(s.pending for s in self.sources):
            self.kick()
        else:
            self._settled()

    def _settled(self) -> None:
        if not self.busy:
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)
