"""The SMS channel's database lane: one trip per round, everything pending goes together, a
failing step is rolled back alone (real DatabaseService, real database, real reactor)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import pytest_twisted
from sqlalchemy import text
from twisted.internet import defer, reactor, task
from twisted.internet.threads import blockingCallFromThread

from ops.dbservice import DatabaseService, StepFailed
from sms.lane import DatabaseLane


def note(uow, rules, words: list[str]) -> int:
    for word in words:
        uow.conn.execute(text("INSERT INTO lane_notes (word) VALUES (:w)"), {"w": word})
    return len(words)


def note_then_fail(uow, rules, words: list[str]) -> int:
    note(uow, rules, words)
    raise RuntimeError("this step breaks after writing")


class Source:
    """A lane source that writes its pending words with ``use_case``."""

    def __init__(self, lane: DatabaseLane, use_case: Any = note, front: bool = False) -> None:
        self.lane, self.use_case = lane, use_case
        self.waiting: list[str] = []
        self.rounds: list[list[str]] = []  # what each round took
        self.results: list[Any] = []
        self.done_d: defer.Deferred = defer.Deferred()
        lane.add(self, front=front)

    def add(self, word: str) -> None:
        self.waiting.append(word)
        self.lane.kick()

    @property
    def pending(self) -> bool:
        return bool(self.waiting)

    @property
    def backlog(self) -> int:
        return len(self.waiting)

    def take(self):
        words, self.waiting = self.waiting, []
        self.rounds.append(words)
        return [(self.use_case, (words,))]

    def done(self, results):
        self.results.extend(results)

    def failed(self, failure):
        self.results.append(failure)


@pytest.fixture
def db(store, rules):
    with store.engine.begin() as conn:
        conn.execute(text("CREATE TABLE lane_notes (word VARCHAR(20))"))
    service = DatabaseService(store, rules, reactor)
    service.startService()
    yield service
    service.pool.stop()


def words_stored(store) -> list[str]:
    with store.engine.connect() as conn:
        return sorted(w for w, in conn.execute(text("SELECT word FROM lane_notes")))


@pytest_twisted.ensureDeferred
async def test_everything_added_while_a_round_runs_goes_in_the_next_round_together(db, store):
    lane = DatabaseLane(db, reactor)
    mo, events = Source(lane), Source(lane)
    mo.add("a")
    events.add("b")
    await lane.when_idle()
    assert (lane.rounds, mo.rounds, events.rounds) == (1, [["a"]], [["b"]])

    mo.add("c")  # the round for "c" starts on the next reactor turn ...
    d = lane.when_idle()
    reactor.callLater(0, lambda: (mo.add("d"), events.add("e"), mo.add("f")))
    await d  # ... and "d", "e", "f", added while it runs, share the one after it
    assert lane.rounds == 3
    assert mo.rounds[1:] == [["c"], ["d", "f"]] and events.rounds[1:] == [["e"]]
    assert words_stored(store) == ["a", "b", "c", "d", "e", "f"]


@pytest_twisted.ensureDeferred
async def test_a_failing_step_is_rolled_back_alone_and_reported_to_its_source(db, store):
    lane = DatabaseLane(db, reactor)
    good, bad, after = Source(lane), Source(lane, note_then_fail), Source(lane)
    good.add("kept")
    bad.add("undone")
    after.add("also kept")
    await lane.when_idle()
    assert lane.rounds == 1
    assert good.results == [1] and after.results == [1]
    (failed,) = bad.results
    assert isinstance(failed, StepFailed) and "breaks" in str(failed.error)
    assert words_stored(store) == ["also kept", "kept"]  # nothing of the failed step


@pytest.fixture
def commits(store):
    """How many transactions the store commits (one COMMIT each; on PostgreSQL a round trip)."""
    from sqlalchemy import event

    seen: list[int] = []

    def on_commit(conn) -> None:
        seen.append(1)

    event.listen(store.engine, "commit", on_commit)
    yield seen
    event.remove(store.engine, "commit", on_commit)


@pytest_twisted.ensureDeferred
async def test_the_front_steps_of_a_round_share_one_commit(db, store, commits):
    lane = DatabaseLane(db, reactor)
    handling = Source(lane)
    stored, recorded = Source(lane, front=True), Source(lane, front=True)
    stored.add("mo")
    recorded.add("receipt")
    handling.add("reply")
    await lane.when_idle()
    assert lane.rounds == 1
    assert (stored.results, recorded.results, handling.results) == ([1], [1], [1])
    assert words_stored(store) == ["mo", "receipt", "reply"]
    assert len(commits) == 2  # the two front steps together, then the handling


@pytest_twisted.ensureDeferred
async def test_a_failing_front_step_is_rolled_back_alone_the_other_front_step_is_kept(
        db, store, commits):
    lane = DatabaseLane(db, reactor)
    handling = Source(lane)
    stored = Source(lane, front=True)
    broken = Source(lane, note_then_fail, front=True)
    stored.add("mo")
    broken.add("undone")
    handling.add("reply")
    await lane.when_idle()
    assert stored.results == [1] and handling.results == [1]
    (failed,) = broken.results
    assert isinstance(failed, StepFailed) and "breaks" in str(failed.error)
    assert words_stored(store) == ["mo", "reply"]  # "mo" was run again, once, on its own
    assert len(commits) == 2


@pytest_twisted.ensureDeferred
async def test_a_front_source_is_answered_as_its_step_commits_before_the_later_steps(db, store):
    # The SMSC waits for each deliver_sm's answer (its window counts the unanswered), so the
    # storing steps go first and are answered before the round's handling has run.
    answered_early = threading.Event()
    seen_by_later_step: list[bool] = []

    def handle(uow, rules, words: list[str]) -> int:
        # Runs on the database thread after the front step; the front source's answer comes
        # through the reactor meanwhile (or never, if answers waited for the whole trip).
        seen_by_later_step.append(answered_early.wait(timeout=5))
        return note(uow, rules, words)

    class Front(Source):
        def done(self, results):
            super().done(results)
            answered_early.set()

    lane = DatabaseLane(db, reactor)
    later = Source(lane, handle)
    front = Front(lane, front=True)  # added after the other, its step still goes first
    later.add("handled")
    front.add("stored")
    await lane.when_idle()
    assert seen_by_later_step == [True]
    assert front.results == [1] and later.results == [1]
    assert words_stored(store) == ["handled", "stored"]


@pytest_twisted.ensureDeferred
async def test_what_arrived_during_a_trip_goes_to_the_database_before_the_handling_results(
        db, store):
    # The handled replies take the reactor a while to submit; the database thread should not
    # wait for that before it gets the MO that arrived meanwhile.
    events: list[str] = []

    class Logged(Source):
        def take(self):
            events.append(f"{self.name} take")
            return super().take()

        def done(self, results):
            events.append(f"{self.name} done")
            super().done(results)

    lane = DatabaseLane(db, reactor)
    handling = Logged(lane)
    handling.name = "handling"
    storing = Logged(lane, front=True)
    storing.name = "storing"

    def slow_handle(uow, rules, words):
        # An MO arrives (in the reactor) while this trip is still on the database thread.
        blockingCallFromThread(reactor, storing.add, "meanwhile")
        return note(uow, rules, words)

    handling.use_case = slow_handle
    storing.add("first")
    handling.add("handled")
    await lane.when_idle()
    assert events[:5] == ["storing take", "handling take", "storing done",
                          "storing take", "handling done"]
    assert storing.results == [1, 1] and handling.results == [1]
    assert words_stored(store) == ["first", "handled", "meanwhile"]


@pytest_twisted.ensureDeferred
async def test_a_light_load_waits_for_round_wait_s_unless_enough_items_wait(db, store):
    # Rounds of one message each pay a round's whole fixed cost: at a moderate load the lane
    # used a full core. (The lane's timer runs on a Clock; the database thread is real.)
    clock = task.Clock()
    lane = DatabaseLane(db, clock, round_wait_s=0.005, round_items=3)
    mo, events = Source(lane), Source(lane)
    mo.add("a")  # nothing ran before: at once
    clock.advance(0)
    await lane.when_idle().addTimeout(10, reactor)

    mo.add("b")  # one item, and the last round began just now: it waits ...
    clock.advance(0.004)
    assert lane.rounds == 1
    clock.advance(0.001)  # ... until round_wait_s after that round began
    await lane.when_idle().addTimeout(10, reactor)
    assert lane.rounds == 2 and mo.rounds[-1] == ["b"]

    mo.add("c")
    clock.advance(0.001)
    assert lane.rounds == 2
    events.add("d")
    mo.add("e")  # three waiting: no more waiting
    clock.advance(0)
    await lane.when_idle().addTimeout(10, reactor)
    assert lane.rounds == 3 and mo.rounds[-1] == ["c", "e"] and events.rounds == [["d"]]
    assert words_stored(store) == ["a", "b", "c", "d", "e"]


@pytest_twisted.ensureDeferred
async def test_a_round_ending_with_enough_waiting_starts_the_next_without_waiting(db, store):
    # Under load the lane stays work-conserving: the next round does not wait for the timer.
    clock = task.Clock()
    lane = DatabaseLane(db, clock, round_wait_s=0.005, round_items=3)
    mo = Source(lane)

    def busy(uow, rules, words):
        if words == ["a"]:  # three MO arrive while this round runs
            for word in ("b", "c", "d"):
                blockingCallFromThread(reactor, mo.add, word)
        return note(uow, rules, words)

    mo.use_case = busy
    mo.add("a")
    clock.advance(0)
    # The clock never moves again: only a round begun at once runs.
    await lane.when_idle().addTimeout(10, reactor)
    assert mo.rounds == [["a"], ["b", "c", "d"]]

    mo.add("e")  # the last round took three: the lane counts as loaded, no waiting
    clock.advance(0)
    await lane.when_idle().addTimeout(10, reactor)
    assert mo.rounds[-1] == ["e"]
