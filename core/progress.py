"""Progress of long steps on stderr, for any command (no Twisted, no store).

A use case reports ``(step, done, total)``; a ``ProgressReporter`` shows it: a bar redrawn in
place when the stream is a terminal, otherwise (a log, a pipe, cron mail) a plain line at the
start of each step, every ``interval_s`` seconds, and at its end, so a slow step is never silent
and a log is not flooded.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

# What a use case calls: (step name, items done, items in the step).
StepProgress = Callable[[str, int, int], None]

BAR_WIDTH = 30
REDRAW_S = 0.1  # a terminal bar is redrawn at most this often


class ProgressReporter:
    """Callable as a ``StepProgress``; ``label`` names the command ("import members")."""

    def __init__(self, label: str, stream: TextIO | None = None, *, interval_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic, tty: bool | None = None) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval_s = interval_s
        self.clock = clock
        self._step: str | None = None
        self._shown_at = 0.0

    def __call__(self, step: str, done: int, total: int) -> None:
        now = self.clock()
        new_step = step != self._step
        finished = done >= total
        if new_step and self._step is not None and self.tty:
            self.stream.write("\n")  # keep the finished bar of the step before
        wait = REDRAW_S if self.tty else self.interval_s
        if not (new_step or finished or now - self._shown_at >= wait):
            return
        self._step, self._shown_at = step, now
        if self.tty:
            filled = BAR_WIDTH * done // max(total, 1)
            self.stream.write(f"\r{self.label}: {step} [{'#' * filled}"
                              f"{'.' * (BAR_WIDTH - filled)}] {done}/{total}")
            if finished:
                self.stream.write("\n")
                self._step = None
        else:
            percent = 100 * done // max(total, 1)
            self.stream.write(f"{self.label}: {step} {done}/{total} ({percent}%)\n")
            if finished:
                self._step = None
        self.stream.flush()
