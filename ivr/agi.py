"""FastAGI server: Asterisk connects (``AGI(agi://host:4573/loyalty)``), we drive the call.

Our own small line protocol (docs/architecture.md says why not pyst2 or starpy):

- Header: ``agi_*: value`` lines, ended by an empty line. Then the flow registered for
  ``agi_network_script`` runs as a coroutine with an ``AGIChannel``.
- Exactly one command is outstanding at a time. ``HANGUP`` lines are events, never replies:
  they can arrive while we are idle or right after the reply to a running command. After one,
  commands that need a live channel fail at once with ``ChannelHungUp`` without being sent.
- A peer silent for ``idle_timeout_s`` while we wait for a reply (plus the input time of GET
  DATA / WAIT FOR DIGIT), or sending a line over 8 KiB, is dropped; the flow gets
  ``ChannelHungUp``.

Wire it with ``endpoints.TCP4ServerEndpoint(reactor, port, interface=host).listen(factory)``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import ServerFactory, connectionDone
from twisted.logger import Logger, LogLevel
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from core.domain import mask_msisdn
from ivr.agi_channel import AGIChannel, GetDataResult
from ivr.agi_wire import (
    HANGUP_EVENT,
    MAX_LINE_BYTES,
    AGICommandError,
    AGIError,
    AGIProtocolError,
    AGIReply,
    ChannelHungUp,
    ReplyAssembler,
    build_command,
    parse_header_line,
    quote_arg,
)
from ivr.peers import PeerGate

__all__ = [
    "AGIChannel",
    "AGICommandError",
    "AGIError",
    "AGIProtocolError",
    "AGIReply",
    "CallObserver",
    "ChannelHungUp",
    "FastAGIFactory",
    "FastAGIProtocol",
    "Flow",
    "GetDataResult",
    "build_command",
    "quote_arg",
]

Flow = Callable[[AGIChannel], Awaitable[None]]

MAX_HEADER_LINES = 256
BUSY_VARIABLE = "LOYALTY_NEXT"

log = Logger()


class CallObserver(Protocol):
    """Optional metrics hooks. Outcomes: completed, hangup, timeout, connection-lost,
    line-too-long, protocol-error, error."""

    def call_started(self, channel: AGIChannel) -> None: ...

    def call_ended(self, channel: AGIChannel, outcome: str) -> None: ...

    def think_time(self, seconds: float) -> None: ...


class FastAGIProtocol(LineOnlyReceiver):
    """One FastAGI connection = one call."""

    delimiter = b"\n"
    MAX_LENGTH = MAX_LINE_BYTES

    def __init__(self, factory: FastAGIFactory) -> None:
        self.factory = factory
        self.clock: IReactorTime = factory.clock
        self.env: dict[str, str] = {}
        self.channel: AGIChannel | None = None
        self.closed = False
        self.close_reason: str | None = None
        self.hangup_seen = False
        self._header_done = False
        self._header_lines = 0
        self._replies = ReplyAssembler()
        self._pending: defer.Deferred[AGIReply] | None = None
        self._closing = False
        self._timer: IDelayedCall | None = None
        self._timer_len = 0.0
        self._last_rx: float | None = None
        self._close_deadline: IDelayedCall | None = None
        self._header_deadline: IDelayedCall | None = None
        self._flow_done = False

    # -- connection events ----------------------------------------------------------------------

    def connectionMade(self) -> None:
        self._arm_timer(self.factory.idle_timeout_s)
        # The idle timer restarts on every byte; the header also has a deadline that data does
        # not move, so a peer dribbling blank lines cannot hold a call slot.
        self._header_deadline = self.clock.callLater(self.factory.idle_timeout_s, self._abort,
                                                     "timeout")

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        if self._timer is not None and self._timer.active():
            self._timer.reset(self._timer_len)
        super().dataReceived(data)

    def lineReceived(self, raw: bytes) -> None:
        if self._closing:
            return
        line = raw.decode("utf-8", errors="replace")
        if line.endswith("\r"):
            line = line[:-1]
        if self._header_done:
            self._reply_line(line)
        else:
            self._header_line(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        log.warn(
            "FastAGI peer sent a line over {limit} bytes; dropping the connection",
            limit=self.MAX_LENGTH,
            uniqueid=self.env.get("uniqueid"),
        )
        self._abort("line-too-long")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed = True
        self._closing = True
        self._cancel_timer()
        for deadline in (self._close_deadline, self._header_deadline):
            if deadline is not None and deadline.active():
                deadline.cancel()
        self._close_deadline = self._header_deadline = None
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.errback(ChannelHungUp(self.close_reason or "connection-lost"))
        self._release()

    # -- header -------------------------------------------------------------------------------

    def _header_line(self, line: str) -> None:
        if line == "":
            if not self.env:
                # Tolerate blank lines before the first header line, but count them: a peer
                # sending only blank lines must not hold a call slot for ever.
                self._header_lines += 1
                if self._header_lines > MAX_HEADER_LINES:
                    self._abort("protocol-error")
                return
            self._header_done = True
            self._cancel_timer()
            self._header_deadline.cancel()
            self._start_call()
            return
        self._header_lines += 1
        if self._header_lines > MAX_HEADER_LINES:
            log.warn("FastAGI header too long; dropping the connection")
            self._abort("protocol-error")
            return
        parsed = parse_header_line(line)
        if parsed is not None:
            self.env[parsed[0]] = parsed[1]

    # -- replies ------------------------------------------------------------------------------

    def _reply_line(self, line: str) -> None:
        try:
            item = self._replies.feed(line)
        except AGIProtocolError as e:
            log.warn("FastAGI protocol error: {error}", error=str(e))
            self._abort("protocol-error")
            return
        if item is None:
            return
        if item is HANGUP_EVENT:
            if not self.hangup_seen:
                self.hangup_seen = True
                log.debug("FastAGI HANGUP event", uniqueid=self.env.get("uniqueid"))
            return
        pending, self._pending = self._pending, None
        if pending is None:
            log.warn("FastAGI reply with no command outstanding; dropping the connection")
            self._abort("protocol-error")
            return
        self._cancel_timer()
        self._last_rx = self.clock.seconds()
        if isinstance(item, ChannelHungUp):
            self.hangup_seen = True
            pending.errback(item)
        elif isinstance(item, AGIError):
            pending.errback(item)
        else:
            assert isinstance(item, AGIReply)
            pending.callback(item)

    def send_command(self, line: str, extra_wait_s: float = 0.0) -> defer.Deferred[AGIReply]:
        """Send one command line; the Deferred fires with its reply (or fails)."""
        if self._pending is not None:
            raise AGIProtocolError("an AGI command is already outstanding on this call")
        if self.closed or self._closing:
            return defer.fail(ChannelHungUp(self.close_reason or "connection-lost"))
        now = self.clock.seconds()
        if self._last_rx is not None:
            self._notify("think_time", now - self._last_rx)
            self._last_rx = None
        d: defer.Deferred[AGIReply] = defer.Deferred()
        self._pending = d
        self.transport.write(line.encode("utf-8") + b"\n")
        self._arm_timer(self.factory.idle_timeout_s + extra_wait_s)
        return d

    # -- call lifecycle -----------------------------------------------------------------------

    def _start_call(self) -> None:
        channel = self.channel = AGIChannel(self.env, self)
        self._last_rx = self.clock.seconds()
        fields = {
            "script": channel.script,
            "uniqueid": channel.uniqueid,
            "caller": mask_msisdn(channel.callerid),
        }
        flow = self.factory.flows.get(channel.script)
        if flow is None:
            log.warn("FastAGI call for unknown script {script!r}", **fields)
            message = f"loyalty: no such FastAGI script {channel.script[:64]!r}"
            self._run_then_close(channel.verbose(message, 1))
            return
        if self.factory.active_calls >= self.factory.max_calls:
            # There is no AGI way to refuse a call. Sending HANGUP would drop a caller we could
            # still serve elsewhere; closing silently leaves the dialplan guessing. So we tell
            # the dialplan why we gave up (${LOYALTY_NEXT} = busy) and end the AGI: the
            # dialplan after AGI() plays "all lines busy" or routes to an agent queue.
            self.factory.rejected_calls += 1
            log.warn(
                "FastAGI at capacity ({max_calls} calls); sending the call back as busy",
                max_calls=self.factory.max_calls,
                **fields,
            )
            self._run_then_close(channel.set_variable(BUSY_VARIABLE, "busy"))
            return
        self.factory.active_calls += 1
        log.info("FastAGI call started: {script} uniqueid={uniqueid} caller={caller}", **fields)
        self._notify("call_started", channel)
        defer.Deferred.fromCoroutine(self._run_flow(flow, channel, fields))

    def _run_then_close(self, step: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await step
            except AGIError:
                pass
            except Exception:
                log.failure("FastAGI refusal step failed", level=LogLevel.error)
            finally:
                self._flow_done = True
                self._close()
                self._release()

        defer.Deferred.fromCoroutine(run())

    async def _run_flow(self, flow: Flow, channel: AGIChannel, fields: dict[str, Any]) -> None:
        outcome = "completed"
        try:
            await flow(channel)
            if self.hangup_seen and not channel.hung_up_locally:
                outcome = "hangup"
        except ChannelHungUp as e:
            outcome = e.outcome
        except Exception:
            outcome = "error"
            log.failure(
                "FastAGI flow {script} failed (uniqueid={uniqueid})", level=LogLevel.error, **fields
            )
        finally:
            self.factory.active_calls -= 1
            log.info(
                "FastAGI call ended: {script} uniqueid={uniqueid} outcome={outcome}",
                outcome=outcome,
                **fields,
            )
            self._notify("call_ended", channel, outcome)
            self._flow_done = True
            self._close()
            self._release()

    def _close(self) -> None:
        if not self.closed and not self._closing:
            self._closing = True
            self._cancel_timer()
            self.transport.loseConnection()
            # A peer that stops reading would hold the connection (and what we still have to
            # send it) forever: give the close a deadline.
            self._close_deadline = self.clock.callLater(self.factory.idle_timeout_s,
                                                        self.transport.abortConnection)

    def _release(self) -> None:
        # Once the connection is gone and no flow runs, drop the links that put a call's
        # objects in reference cycles (protocol <-> channel): reference counting then frees
        # the call at once. Left to the cyclic collector, which tune_gc() makes rare, every
        # finished call stayed in memory for many minutes.
        if self.closed and self._flow_done:
            self.channel = None

    def _abort(self, reason: str) -> None:
        if self.closed:
            return
        self.close_reason = self.close_reason or reason
        self._closing = True
        self._cancel_timer()
        self.transport.abortConnection()

    def _notify(self, hook: str, *args: object) -> None:
        observer = self.factory.observer
        if observer is None:
            return
        try:
            getattr(observer, hook)(*args)
        except Exception:
            log.failure("FastAGI observer hook {hook} failed", hook=hook, level=LogLevel.error)

    # -- idle timer ---------------------------------------------------------------------------

    def _arm_timer(self, seconds: float) -> None:
        self._cancel_timer()
        self._timer_len = seconds
        self._timer = self.clock.callLater(seconds, self._idle_timeout)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _idle_timeout(self) -> None:
        self._timer = None
        log.warn(
            "FastAGI peer silent for {seconds:.1f}s; dropping the connection",
            seconds=self._timer_len,
            uniqueid=self.env.get("uniqueid"),
        )
        self._abort("timeout")


class FastAGIFactory(ServerFactory):
    """Builds one ``FastAGIProtocol`` per connection and dispatches on the script name."""

    protocol = FastAGIProtocol

    def __init__(
        self,
        flows: Mapping[str, Flow],
        max_calls: int = 3000,
        idle_timeout_s: float = 60.0,
        observer: CallObserver | None = None,
        *,
        clock: IReactorTime,
        gate: PeerGate | None = None,
    ) -> None:
        self.flows = {name.strip("/"): flow for name, flow in flows.items()}
        self.max_calls = max_calls
        self.idle_timeout_s = idle_timeout_s
        self.observer = observer
        self.clock = clock
        self.active_calls = 0
        self.rejected_calls = 0
        self.gate = gate  # ivr.peers.PeerGate: who may connect (None: anyone)

    def buildProtocol(self, addr: object) -> FastAGIProtocol | None:
        if self.gate is not None and not self.gate.admits(addr):
            return None  # Twisted closes the socket at once: nothing read, nothing sent
        return FastAGIProtocol(self)
