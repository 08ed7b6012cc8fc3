"""The run-again helper shared by the MO handler, the outbox sender and the voice dispatcher."""

from twisted.internet import defer, task

from core.clock import WALL_CLOCK, utc_now, utc_now_from
from ops.coalesce import Coalescer


class Rounds:
    def __init__(self) -> None:
        self.started: list[defer.Deferred[None]] = []

    def __call__(self) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        self.started.append(d)
        return d


def test_kicks_while_running_give_exactly_one_more_round():
    rounds = Rounds()
    loop = Coalescer(rounds)
    idle = loop.kick()
    loop.kick()
    loop.kick()
    assert len(rounds.started) == 1 and loop.busy
    rounds.started[0].callback(None)
    assert len(rounds.started) == 2  # the kicks meanwhile: one more round, at once
    assert not idle.called
    rounds.started[1].callback(None)
    assert len(rounds.started) == 2 and not loop.busy and idle.called


def test_with_a_clock_the_next_round_waits_for_the_next_turn():
    clock, rounds = task.Clock(), Rounds()
    loop = Coalescer(rounds, clock)
    loop.kick()
    loop.kick()
    rounds.started[0].callback(None)
    assert len(rounds.started) == 1 and loop.busy
    clock.advance(0)
    assert len(rounds.started) == 2


def test_a_failed_round_is_not_repeated_at_once_and_the_next_kick_runs():
    rounds = Rounds()
    loop = Coalescer(rounds)
    idle = loop.kick()
    loop.kick()
    rounds.started[0].errback(RuntimeError("database down"))
    assert len(rounds.started) == 1 and not loop.busy and idle.called
    loop.kick()
    assert len(rounds.started) == 2


def test_a_round_that_finishes_at_once_leaves_it_idle():
    calls = []
    loop = Coalescer(lambda: calls.append(1))
    assert loop.kick().called and calls == [1] and not loop.busy
    assert loop.when_idle().called


def test_now_is_the_clocks_time_in_utc():
    clock = task.Clock()
    clock.advance(86_400 + 1.5)
    assert utc_now(clock).isoformat() == "1970-01-02T00:00:01.500000+00:00"
    now = utc_now_from(clock)
    clock.advance(1)
    assert now().second == 2
    assert utc_now(WALL_CLOCK).tzinfo is not None
