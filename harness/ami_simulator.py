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
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger

from harness.ami_dialplan import WarningDialplan
from harness.ami_sim_protocol import (
    ALL_EVENT_CLASSES,
    FORBIDDEN,
    FORBIDDEN_MESSAGE,
    OUTCOMES,
    SILENT,
    AMIAction,
    AMIServerProtocol,
    AnsweredCall,
    WireEntry,
)

__all__ = [
    "AMIAction",
    "AMISimulator",
    "AnsweredCall",
    "OUTCOMES",
    "WireEntry",
]

class AMISimulator(ServerFactory):
    """The fake manager. Listen with ``reactor.listenTCP(0, sim, interface="127.0.0.1")``.

    ``outcomes`` maps a dialled number (from ``Channel``, e.g. ``Local/<number>@ctx``) to an
    outcome name, or is a callable ``number -> outcome``; unknown numbers get
    ``default_outcome``. ``originate_delay`` (seconds, per-number overrides in ``delays``) is how
    long the call "rings" before the event. ``interleave_events`` sends other sessions' events
    (a Newchannel, OriginateResponses for other ActionIDs with a contrary outcome, a Hangup)
    just before each real OriginateResponse. ``on_answered(call: AnsweredCall)`` runs when a call
    is answered (as if the call now ran its AGI); its results are kept in ``answered_calls``.
    ``fastagi=(host, port)`` without ``on_answered``: answered calls follow the sample dialplan
    against that FastAGI server (``harness.ami_dialplan.WarningDialplan``, kept in
    :attr:`dialplan`), each member pressing ``caller_keys[number]``.
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
        fastagi: tuple[str, int] | None = None,
        caller_keys: Mapping[str, str] | None = None,
        version: str = "5.0.1",
        reactor: Any = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.dialplan: WarningDialplan | None = None
        if fastagi is not None and on_answered is None:
            self.dialplan = WarningDialplan(*fastagi, keys=caller_keys, reactor=reactor)
            on_answered = self.dialplan
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
        self._protocols: set[AMIServerProtocol] = set()
        self._lost_waiters: list[Deferred[None]] = []
        self._delayed: set[Any] = set()
        self._ids = itertools.count(1)

    # -- factory --------------------------------------------------------------------------

    def buildProtocol(self, addr: Any) -> AMIServerProtocol:
        self.connections_made += 1
        return AMIServerProtocol(self, self.connections_made)

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

    def _connection_made(self, proto: AMIServerProtocol) -> None:
        self._protocols.add(proto)

    def _connection_lost(self, proto: AMIServerProtocol) -> None:
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

    def _handle(self, proto: AMIServerProtocol, headers: list[tuple[str, str]]) -> None:
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

    def _login(self, proto: AMIServerProtocol, action: AMIAction, reply: Callable) -> None:
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
            proto.event_classes = ALL_EVENT_CLASSES
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

    def _originate(self, proto: AMIServerProtocol, action: AMIAction, reply: Callable) -> None:
        channel = action.get("Channel") or ""
        if not channel:
            reply("Error", ("Message", "Channel not specified"))
            return
        number = channel.split("/", 1)[-1].split("@", 1)[0]
        outcome = self.outcome_for(number)
        if outcome == FORBIDDEN:
            reply("Error", ("Message", FORBIDDEN_MESSAGE))
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
        proto: AMIServerProtocol,
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
        d = maybeDeferred(self.on_answered, call).addCallback(
            lambda r: ensureDeferred(r) if hasattr(r, "__await__") else r)
        self.answered_calls.append((call, d))

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
