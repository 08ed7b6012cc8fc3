"""The call simulator with a person at the keypad (``loyalty simulate call --interactive``):
keys are read from a terminal whenever the call needs input."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet import threads

from harness.simulator import CallResult, simulate_call
from harness.simulator_engine import CALLER_KEYS, Event, KeySource

__all__ = ["InteractiveKeys", "run_interactive"]

ReadLine = Callable[[str], Awaitable["str | None"]]


class InteractiveKeys(KeySource):
    """Keys typed by a person: read a line whenever the call needs input and none is queued.

    At a prompt with escape digits, Enter alone lets it play; at an input, Enter alone is a
    timeout. At GET DATA, the end of the typed line is where the caller stops typing: without a
    final ``#`` (or enough digits) the input then times out, as on a phone.
    """

    def __init__(self, read_line: ReadLine, write: Callable[[str], None]) -> None:
        super().__init__("")
        self._read_line = read_line
        self._write = write
        self._eof = False

    async def ensure(self, hint: str, escape_digits: str = "") -> None:
        if self.peek() is not None or self._eof:
            return
        if hint == "more-digits":
            self.push("T")
            return
        if hint == "barge":
            ask = f"  [press {escape_digits} to interrupt, Enter to let it play, H to hang up] > "
        elif hint == "digits":
            ask = "  [type digits and Enter (# ends), Enter alone = no input, H = hang up] > "
        else:
            ask = "  [press a key and Enter, Enter alone = no input, H = hang up] > "
        line = await self._read_line(ask)
        if line is None:
            self._eof = True
            return
        typed = "".join(ch for ch in line.strip().upper() if ch in CALLER_KEYS)
        if typed != line.strip().upper():
            self._write(f"  (ignored keys other than {CALLER_KEYS})")
        if not typed:
            if hint != "barge":
                self.push("T")
            return
        self.push(typed)


def _stdin_reader(write: Callable[[str], None]) -> ReadLine:
    async def read(ask: str) -> str | None:
        write(ask)
        line = await threads.deferToThread(sys.stdin.readline)
        return None if line == "" else line.rstrip("\n")

    return read


async def run_interactive(
    host: str,
    port: int,
    *,
    timeout_s: float = 3600.0,
    read_line: ReadLine | None = None,
    write: Callable[[str], None] | None = None,
    **call: Any,
) -> CallResult:
    """A call where a person types the keys; each event is printed as it happens.

    ``read_line(prompt)`` returns a typed line or None at end of input (default: stdin, read in
    a thread); ``write`` prints a line (default: stdout). The other keywords (``callerid``,
    ``script``, ``language``, ``prompt_text``, ``args``, ``reactor``...) are those of
    :func:`harness.simulator.simulate_call`."""
    if write is None:

        def write(text: str) -> None:
            print(text, flush=True)

    keys = InteractiveKeys(read_line or _stdin_reader(write), write)

    def show(event: Event) -> None:
        line = event.render()
        if line is not None:
            write(line)

    result = await simulate_call(
        host, port, timeout_s=timeout_s, key_source=keys, on_event=show, **call
    )
    write(f"-- call over: hung up by {result.hung_up_by}")
    return result
