"""Simulated-call transcript events and the scripted caller's keys."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

DTMF_KEYS = "0123456789*#ABCD"
CALLER_KEYS = DTMF_KEYS + "TH"


# -- transcript ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One thing that happened on the simulated call."""

    kind: str
    value: str = ""
    detail: str = ""
    interrupted: bool = False

    def render(self, *, verbose: bool = False) -> str | None:
        k, v, d = self.kind, self.value, self.detail
        cut = " (interrupted)" if self.interrupted else ""
        if k == "prompt":
            said = f"  «{d}»" if d and d != v else ""
            return f"heard: {v}{said}{cut}"
        simple = {
            "missing-prompt": f"missing prompt: {v} (language {d})",
            "number": f"heard number: {v}{cut}",
            "digits": f"heard digits: {v}{cut}",
            "alpha": f"heard letters: {v}{cut}",
            "date": f"heard date: {d}{cut}",
            "time": f"heard time: {d}{cut}",
            "datetime": f"heard date/time: {d}{cut}",
            "keys": f"pressed: {v}",
            "timeout": "no input (timeout)",
            "variable": f"set {v}",
            "exec": f"exec: {v}",
            "answer": "answered",
            "hangup": f"{v} hung up" + (f" ({d})" if d else ""),
            "closed": "AGI ended by the server (dialplan continues)",
            "sim-timeout": f"simulator gave up after {v} s",
        }
        if k in simple:
            return simple[k]
        if k == "verbose":
            return f"verbose: {v}" if verbose else None
        return f"{k}: {v}"


class Transcript(list[Event]):
    """The events of one call, in order; ``render()`` is what the caller heard and pressed."""

    def lines(self, *, verbose: bool = False) -> list[str]:
        out = (event.render(verbose=verbose) for event in self)
        return [line for line in out if line is not None]

    def render(self, *, verbose: bool = False) -> str:
        return "\n".join(self.lines(verbose=verbose))

    def kinds(self) -> list[str]:
        return [event.kind for event in self]


# -- the caller's keys ------------------------------------------------------------------------


class KeySource:
    """Scripted caller keys (see the module docstring)."""

    def __init__(self, keys: str = "") -> None:
        self._queue: deque[str] = deque()
        self.push(keys)

    def push(self, keys: str) -> None:
        for ch in keys.upper():
            if ch.isspace():
                continue
            if ch not in CALLER_KEYS:
                raise ValueError(f"invalid caller key {ch!r}: use {CALLER_KEYS}")
            self._queue.append(ch)

    async def ensure(self, hint: str, escape_digits: str = "") -> None:
        """Called before each input opportunity; an interactive source reads keys here.

        ``hint`` is ``barge`` (a prompt with escape digits), ``digits`` (GET DATA, first key),
        ``more-digits`` (GET DATA, later keys) or ``digit`` (WAIT FOR DIGIT / GET OPTION)."""

    def peek(self) -> str | None:
        return self._queue[0] if self._queue else None

    def pop(self) -> str | None:
        return self._queue.popleft() if self._queue else None

    @property
    def remaining(self) -> str:
        return "".join(self._queue)
