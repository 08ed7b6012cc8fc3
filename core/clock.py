"""The one way a service turns its clock into "now".

Services are given a clock (the reactor, or a ``task.Clock`` in tests) and read the time from
it, so a test that advances its clock moves every "now" with it. The core does not import
Twisted, so the clock is typed by the one method used here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol


class SecondsClock(Protocol):
    """Anything with ``seconds()``: the reactor, ``task.Clock``, ``time``."""

    def seconds(self) -> float: ...


def utc_now(clock: SecondsClock) -> datetime:
    """The clock's time as an aware UTC datetime."""
    return datetime.fromtimestamp(clock.seconds(), UTC)


def utc_now_from(clock: SecondsClock) -> Callable[[], datetime]:
    """A ``now()`` function reading ``clock`` (for use cases that are given ``now``)."""
    return lambda: utc_now(clock)


class WallClock:
    """The system's clock, for commands that run without a reactor (the CLI)."""

    def seconds(self) -> float:
        return time.time()


WALL_CLOCK = WallClock()
