"""The wire side of the AMI simulator: actions as received, outcomes, one manager connection.

Lines end in CRLF and a message (action, response or event) ends with an empty line, as in
Asterisk's ``main/manager.c``; see ``harness.ami_simulator`` for what the manager does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from twisted.protocols.basic import LineReceiver

if TYPE_CHECKING:
    from harness.ami_simulator import AMISimulator

#: outcome name -> (Response, Reason) of the OriginateResponse event
OUTCOMES: dict[str, tuple[str, int]] = {
    "answered": ("Success", 4),
    "no-answer": ("Failure", 3),
    "busy": ("Failure", 5),
    "congestion": ("Failure", 8),
    "failed": ("Failure", 0),
    "hangup": ("Failure", 1),
}
SILENT = "silent"
FORBIDDEN = "forbidden"

EVENT_CLASS = {
    "OriginateResponse": "call",
    "Newchannel": "call",
    "Hangup": "call",
    "VarSet": "dialplan",
    "FullyBooted": "system",
}
ALL_EVENT_CLASSES = frozenset({"system", "call", "log", "verbose", "command", "agent", "user",
                          "config", "dtmf", "reporting", "cdr", "dialplan", "originate",
                          "agi", "cc", "aoc", "test", "security", "message"})
FORBIDDEN_MESSAGE = (
    "Originate with certain 'Application' arguments requires the additional System privilege, "
    "which you do not have."
)


@dataclass(frozen=True)
class AMIAction:
    """One action as received: its headers in wire order."""

    connection: int
    headers: tuple[tuple[str, str], ...]
    received_at: float

    def get(self, key: str, default: str | None = None) -> str | None:
        """The first value of a header (names are case-insensitive, as in Asterisk)."""
        for name, value in self.headers:
            if name.lower() == key.lower():
                return value
        return default

    def get_all(self, key: str) -> list[str]:
        return [value for name, value in self.headers if name.lower() == key.lower()]

    @property
    def name(self) -> str:
        return self.get("Action") or ""

    @property
    def action_id(self) -> str | None:
        return self.get("ActionID")

    def variables(self) -> dict[str, str]:
        """``Variable`` headers as Asterisk reads them (several headers, or comma-separated)."""
        result: dict[str, str] = {}
        for header in self.get_all("Variable"):
            for item in header.split(","):
                name, sep, value = item.partition("=")
                if sep:
                    result[name.strip()] = value
        return result


@dataclass(frozen=True)
class AnsweredCall:
    """What the ``on_answered`` hook is told about a call that was "answered"."""

    action: AMIAction
    number: str
    channel: str
    uniqueid: str
    application: str | None
    data: str | None
    variables: Mapping[str, str] = field(default_factory=dict)


class WireEntry(NamedTuple):
    kind: str  # "action" or "event"
    name: str  # action or event name
    action_id: str | None


class AMIServerProtocol(LineReceiver):
    delimiter = b"\r\n"
    MAX_LENGTH = 65536

    def __init__(self, simulator: AMISimulator, number: int) -> None:
        self.simulator = simulator
        self.number = number
        self.authenticated = False
        self.event_classes: frozenset[str] = ALL_EVENT_CLASSES
        self._lines: list[str] = []

    def connectionMade(self) -> None:
        self.simulator._connection_made(self)
        self.transport.write(f"Asterisk Call Manager/{self.simulator.version}\r\n".encode())

    def connectionLost(self, reason: Any = None) -> None:
        self.simulator._connection_lost(self)

    def lineReceived(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace")
        if text.strip():
            self._lines.append(text)
            return
        if not self._lines:
            return  # blank lines between messages
        headers = []
        for raw in self._lines:
            name, _, value = raw.partition(":")
            headers.append((name.strip(), value.lstrip(" \t")))
        self._lines = []
        self.simulator._handle(self, headers)

    def send_message(self, pairs: list[tuple[str, str]]) -> None:
        if self.transport is None or not self.connected:
            return
        self.transport.write(("".join(f"{k}: {v}\r\n" for k, v in pairs) + "\r\n").encode())

    def wants(self, event_name: str) -> bool:
        return self.authenticated and EVENT_CLASS.get(event_name, "call") in self.event_classes
