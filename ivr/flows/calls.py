"""Per-call facts shared by a flow and the server's call recorder (``ivr.server``).

The FastAGI observer opens a ``CallInfo`` when a call starts; the flow adds the menu path, the
member once known and how the call ended from its point of view (agent, closed...); the
observer stores it all as the call record when the call ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ivr.agi_channel import AGIChannel


@dataclass
class CallInfo:
    uniqueid: str
    script: str
    started: datetime
    caller: str | None = None
    msisdn: str | None = None
    path: list[str] = field(default_factory=list)
    outcome: str | None = None  # set by the flow: agent, closed, pin-locked
    failures: int = 0  # unexpected errors so far (only the first is logged, ivr.flows.trouble)

    def step(self, segment: str) -> None:
        """A new top-level step of the menu path (a main-menu key)."""
        self.path.append(segment)

    def detail(self, segment: str) -> None:
        """A sub-step of the current step: 4, then A01, then confirm -> ``4:A01:confirm``."""
        if self.path:
            self.path[-1] += f":{segment}"
        else:
            self.path.append(segment)

    @property
    def menu_path(self) -> str:
        return ",".join(self.path)


class CallBook:
    """Open calls by channel."""

    def __init__(self) -> None:
        self._calls: dict[AGIChannel, CallInfo] = {}

    def __len__(self) -> int:
        return len(self._calls)

    def open(self, channel: AGIChannel, now: datetime) -> CallInfo:
        info = self._calls.get(channel)
        if info is None:
            info = CallInfo(channel.uniqueid, channel.script, now,
                            caller=channel.callerid)
            self._calls[channel] = info
        return info

    def get(self, channel: AGIChannel) -> CallInfo | None:
        return self._calls.get(channel)

    def close(self, channel: AGIChannel) -> CallInfo | None:
        return self._calls.pop(channel, None)
