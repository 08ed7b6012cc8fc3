"""A fake Asterisk manager (AMI) server speaking the real wire protocol, for tests and the harness.

What it does, as Asterisk's ``main/manager.c`` does:

- greets with ``Asterisk Call Manager/<version>``; lines end in CRLF, a message ends with an
  empty line; replies echo the action's ``ActionID``;
- ``Login`` (``Username``/``Secret``; ``Events`` sets which event classes the session gets):
  ``Success``/``Authentication accepted``, or ``Error``/``Authentication failed`` and the
  connection is closed; anything but Login/Logoff/Challenge before login: ``Permission denied``;
- ``Ping`` -> ``Ping: Pong``; ``Logoff`` -> ``Goodbye``/``Thanks for all the fish.``, then close;
- ``Originate`` with ``Async: true``: ``Success``/``Originate successfully queued`` at once, and
  after a delay an ``OriginateResponse`` event (sent to *every* logged-in session that reads
  ``call`` events, as Asterisk does) with the ActionID, ``Response: Success|Failure`` and the
  ``Reason`` of the outcome chosen per number.

Outcomes: ``answered`` (Reason 4), ``no-answer`` (3), ``busy`` (5), ``congestion`` (8),
``failed`` (0), ``hangup`` (1); ``silent`` queues the call but never reports it; ``forbidden``
refuses the Originate like a manager user without the ``system`` write privilege.

Every action received is recorded (:attr:`AMISimulator.actions`) and the order of actions and
``OriginateResponse`` events is kept in :attr:`AMISimulator.wire_log`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver

__all__ = [
    "AMIAction",
    "AMISimulator",
    "AnsweredCall",
    "OUTCOMES",
    "WireEntry",
]

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

_EVENT_CLASS = {
    "OriginateResponse": "call",
    "Newchannel": "call",
    "Hangup": "call",
    "VarSet": "dialplan",
    "FullyBooted": "system",
}
_ALL_CLASSES = frozenset({"system", "call", "log", "verbose", "command", "agent", "user",
                          "config", "dtmf", "reporting", "cdr", "dialplan", "originate",
                          "agi", "cc", "aoc", "test", "security", "message"})
_FORBIDDEN_MESSAGE = (
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


class _AMIServerProtocol(LineReceiver):
    delimiter = b"\r\n"
    MAX_LENGTH = 65536

    def __init__(self, simulator: AMISimulator, number: int) -> None:
        self.simulator = simulator
        self.number = number
        self.authenticated = False
        self.event_classes: frozenset[str] = _ALL_CLASSES
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
        return self.authenticated and _EVENT_CLASS.get(event_name, "call") in self.event_classes


class AMISimulator(ServerFactory):
    """The fake manager. Listen with ``reactor.listenTCP(0, sim, interface="127.0.0.1")``.

    ``outcomes`` maps a dialled number (from ``Channel``, e.g. ``Local/<number>@ctx``) to an
    outcome name, or is a callable ``number -> outcome``; unknown numbers get
    ``default_outcome``. ``originate_delay`` (seconds, per-number overrides in ``delays``) is how
    long the call "rings" before the event. ``interleave_events`` sends other sessions' events
    (a Newchannel, OriginateResponses for other ActionIDs with a contrary outcome, a Hangup)
    just before each real OriginateResponse. ``on_answered(call: AnsweredCall)`` runs when a call
    is answered (as if the call now ran its AGI); its results are kept in ``answered_calls``.
    """

    log = Logger()

    def __init__(
        self,
        username: str = "loyalty",
        secret: str = "secret",
        *,
        outcomes: Mapping[str, str] | Callable[[str], str] | None = None,
        default_outcome: str = "answered",
        originate_delay: float = 0.05,
        delays: Mapping[str, float] | None = None,
        interleave_events: bool = False,
        on_answered: Callable[[AnsweredCall], Any] | None = None,
        version: str = "5.0.1",
        reactor: Any = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.username = username
        self.secret = secret
        self.outcomes: Any = dict(outcomes or {}) if not callable(outcomes) else outcomes
        self.default_outcome = default_outcome
        self.originate_delay = originate_delay
        self.delays: dict[str, float] = dict(delays or {})
        self.interleave_events = interleave_events
        self.on_answered = on_answered
        self.version = version

        self.actions: list[AMIAction] = []
        self.wire_log: list[WireEntry] = []
        self.answered_calls: list[tuple[AnsweredCall, Deferred[Any]]] = []
        self.connections_made = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._protocols: set[_AMIServerProtocol] = set()
        self._lost_waiters: list[Deferred[None]] = []
        self._delayed: set[Any] = set()
        self._ids = itertools.count(1)

    # -- factory --------------------------------------------------------------------------

    def buildProtocol(self, addr: Any) -> _AMIServerProtocol:
        self.connections_made += 1
        return _AMIServerProtocol(self, self.connections_made)

    def listen(self, port: int = 0, interface: str = "127.0.0.1") -> Any:
        """Listen on TCP; returns the IListeningPort (``.getHost().port``)."""
        return self.reactor.listenTCP(port, self, interface=interface)

    # -- test helpers ---------------------------------------------------------------------

    def actions_named(self, name: str) -> list[AMIAction]:
        return [a for a in self.actions if a.name.lower() == name.lower()]

    @property
    def open_connections(self) -> int:
        return len(self._protocols)

    def drop_connections(self) -> Deferred[None]:
        """Close every client connection (as if Asterisk restarted); fires once all are gone."""
        waiters = []
        for proto in list(self._protocols):
            d: Deferred[None] = Deferred()
            self._lost_waiters.append(d)
            waiters.append(d)
            proto.transport.abortConnection()
        from twisted.internet.defer import gatherResults

        return gatherResults(waiters).addCallback(lambda _: None)

    def close(self) -> None:
        """Cancel pending events and close all connections (test teardown)."""
        for call in list(self._delayed):
            if call.active():
                call.cancel()
        self._delayed.clear()
        for proto in list(self._protocols):
            proto.transport.abortConnection()

    # -- protocol callbacks ---------------------------------------------------------------

    def _connection_made(self, proto: _AMIServerProtocol) -> None:
        self._protocols.add(proto)

    def _connection_lost(self, proto: _AMIServerProtocol) -> None:
        self._protocols.discard(proto)
        waiters, self._lost_waiters = self._lost_waiters, []
        if not self._protocols:
            for d in waiters:
                d.callback(None)
        else:
            self._lost_waiters = waiters

    def _later(self, delay: float, f: Callable[..., Any], *args: Any) -> None:
        call = None

        def run() -> None:
            self._delayed.discard(call)
            f(*args)

        call = self.reactor.callLater(delay, run)
        self._delayed.add(call)

    def _handle(self, proto: _AMIServerProtocol, headers: list[tuple[str, str]]) -> None:
        action = AMIAction(proto.number, tuple(headers), self.reactor.seconds())
        self.actions.append(action)
        self.wire_log.append(WireEntry("action", action.name, action.action_id))
        reply_id = [("ActionID", action.action_id)] if action.action_id is not None else []
        name = action.name.lower()

        def reply(response: str, *pairs: tuple[str, str]) -> None:
            proto.send_message([("Response", response), *reply_id, *pairs])

        if not name:
            reply("Error", ("Message", "Missing action in request"))
        elif name == "logoff":
            reply("Goodbye", ("Message", "Thanks for all the fish."))
            proto.transport.loseConnection()
        elif name == "login":
            self._login(proto, action, reply)
        elif name == "challenge" and not proto.authenticated:
            reply("Error", ("Message", "Must specify AuthType"))
        elif not proto.authenticated:
            reply("Error", ("Message", "Permission denied"))
        elif name == "ping":
            reply("Success", ("Ping", "Pong"), ("Timestamp", f"{self.reactor.seconds():.6f}"))
        elif name == "originate":
            self._originate(proto, action, reply)
        else:
            reply("Error", ("Message", "Invalid/unknown command"))

    def _login(self, proto: _AMIServerProtocol, action: AMIAction, reply: Callable) -> None:
        if proto.authenticated:
            reply("Success", ("Message", "Already authenticated"))
            return
        if action.get("Username") != self.username or action.get("Secret") != self.secret:
            reply("Error", ("Message", "Authentication failed"))
            proto.transport.loseConnection()
            return
        proto.authenticated = True
        events = (action.get("Events") or "on").strip().lower()
        if events in ("on", "yes", "true", "1"):
            proto.event_classes = _ALL_CLASSES
        elif events in ("off", "no", "false", "0"):
            proto.event_classes = frozenset()
        else:
            proto.event_classes = frozenset(c.strip() for c in events.split(","))
        reply("Success", ("Message", "Authentication accepted"))
        if proto.wants("FullyBooted"):
            proto.send_message(
                [("Event", "FullyBooted"), ("Privilege", "system,all"), ("Status", "Fully Booted")]
            )

    # -- originate ------------------------------------------------------------------------

    def outcome_for(self, number: str) -> str:
        if callable(self.outcomes):
            return self.outcomes(number)
        return self.outcomes.get(number, self.default_outcome)

    def _originate(self, proto: _AMIServerProtocol, action: AMIAction, reply: Callable) -> None:
        channel = action.get("Channel") or ""
        if not channel:
            reply("Error", ("Message", "Channel not specified"))
            return
        number = channel.split("/", 1)[-1].split("@", 1)[0]
        outcome = self.outcome_for(number)
        if outcome == FORBIDDEN:
            reply("Error", ("Message", _FORBIDDEN_MESSAGE))
            return
        if outcome != SILENT and outcome not in OUTCOMES:
            raise ValueError(f"unknown simulated outcome {outcome!r}")
        is_async = (action.get("Async") or "").lower() in ("true", "yes", "y", "t", "1", "on")
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        delay = self.delays.get(number, self.originate_delay)
        if is_async:
            reply("Success", ("Message", "Originate successfully queued"))
        if outcome == SILENT:
            return
        self._later(delay, self._finish_originate, proto, action, number, outcome, is_async, reply)

    def _finish_originate(
        self,
        proto: _AMIServerProtocol,
        action: AMIAction,
        number: str,
        outcome: str,
        is_async: bool,
        reply: Callable,
    ) -> None:
        self.in_flight -= 1
        response, reason = OUTCOMES[outcome]
        serial = next(self._ids)
        requested = action.get("Channel") or ""
        if response == "Success":
            channel = f"{requested}-{serial:08x};1"
            uniqueid = f"{1700000000 + serial}.{serial}"
        else:
            channel, uniqueid = requested, "<null>"
        if not is_async:
            if response == "Success":
                reply("Success", ("Message", "Originate successfully queued"))
            else:
                reply("Error", ("Message", "Originate failed"))
            self._answered(action, number, channel, uniqueid, response)
            return
        if self.interleave_events:
            self._interleave(channel, outcome, serial)
        pairs = [("Event", "OriginateResponse"), ("Privilege", "call,all")]
        if action.action_id is not None:
            pairs.append(("ActionID", action.action_id))
        pairs += [
            ("Response", response),
            ("Channel", channel),
            ("Context", action.get("Context") or ""),
            ("Exten", action.get("Exten") or ""),
            ("Application", action.get("Application") or ""),
            ("Data", action.get("Data") or ""),
            ("Reason", str(reason)),
            ("Uniqueid", uniqueid),
            ("CallerIDNum", action.get("CallerID") or "<unknown>"),
            ("CallerIDName", "<unknown>"),
        ]
        self._broadcast("OriginateResponse", pairs, action.action_id)
        self._answered(action, number, channel, uniqueid, response)

    def _answered(
        self, action: AMIAction, number: str, channel: str, uniqueid: str, response: str
    ) -> None:
        if response != "Success" or self.on_answered is None:
            return
        call = AnsweredCall(
            action=action,
            number=number,
            channel=channel,
            uniqueid=uniqueid,
            application=action.get("Application"),
            data=action.get("Data"),
            variables=action.variables(),
        )
        self.answered_calls.append((call, maybeDeferred(self.on_answered, call)))

    def _interleave(self, channel: str, outcome: str, serial: int) -> None:
        other_outcome = "busy" if outcome == "answered" else "answered"
        other_response, other_reason = OUTCOMES[other_outcome]
        other_id = f"other-client-{serial}"
        self._broadcast(
            "Newchannel",
            [("Event", "Newchannel"), ("Privilege", "call,all"), ("Channel", channel),
             ("ChannelState", "0"), ("Uniqueid", f"1600000000.{serial}")],
        )
        for action_id in (other_id, None):
            pairs = [("Event", "OriginateResponse"), ("Privilege", "call,all")]
            if action_id is not None:
                pairs.append(("ActionID", action_id))
            pairs += [("Response", other_response), ("Channel", "PJSIP/other-00000001"),
                      ("Reason", str(other_reason)), ("Uniqueid", f"1600000001.{serial}")]
            self._broadcast("OriginateResponse", pairs, action_id)
        self._broadcast(
            "Hangup",
            [("Event", "Hangup"), ("Privilege", "call,all"), ("Channel", "PJSIP/other-00000001"),
             ("Cause", "16"), ("Cause-txt", "Normal Clearing")],
        )

    def _broadcast(self, name: str, pairs: list[tuple[str, str]], action_id: Any = False) -> None:
        if name == "OriginateResponse":
            self.wire_log.append(WireEntry("event", name, action_id or None))
        for proto in list(self._protocols):
            if proto.wants(name):
                proto.send_message(pairs)
