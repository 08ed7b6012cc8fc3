"""Call simulator: a FastAGI client that behaves like Asterisk's res_agi, driven by a script.

It connects to our FastAGI server, sends the ``agi_*`` header the way Asterisk does, then
answers every command as ``harness.simulator_engine`` (a res_agi emulation) decides, playing a
caller who presses the keys you give it. It records a transcript of what the caller heard and
pressed::

    result = await simulate_call("127.0.0.1", 4573, callerid="13812345678", keys="2T#")
    print(result.transcript.render())

Hang-ups behave like Asterisk: the running command still gets its reply, then a separate
``HANGUP`` line; later commands that need a live channel get 511; the simulator keeps answering
until the server closes the connection (or ``timeout_s`` passes).
"""

from __future__ import annotations

import itertools
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet import defer, endpoints
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from harness.simulator_engine import (
    Event,
    KeySource,
    PromptText,
    SimulatedChannel,
    Transcript,
)

__all__ = [
    "CallResult",
    "Event",
    "KeySource",
    "SimulatorProtocol",
    "Transcript",
    "build_header",
    "run_many",
    "simulate_call",
]

ASTERISK_COMMAND_BUFFER = 2047  # res_agi reads commands with fgets into char buf[2048]
SIMULATED_VERSION = "20.0.0-sim"

log = Logger()
_call_ids = itertools.count(1)


@dataclass(frozen=True)
class CallResult:
    """What happened on one simulated call."""

    transcript: Transcript
    variables_set: dict[str, str]
    commands: list[str]
    hung_up_by: str  # "caller" or "server" (the server hung up or ended the AGI)
    timed_out: bool = False
    channel: str = ""
    uniqueid: str = ""
    remaining_keys: str = field(default="")
    recordings: dict[str, Path] = field(default_factory=dict)  # RECORD FILE name -> file

    def render(self, *, verbose: bool = False) -> str:
        return self.transcript.render(verbose=verbose)


def build_header(
    host: str,
    port: int,
    script: str,
    *,
    channel: str,
    language: str,
    uniqueid: str,
    callerid: str | None,
    calleridname: str | None = None,
    dnid: str = "unknown",
    context: str = "default",
    extension: str = "s",
    args: Sequence[str] = (),
    threadid: int = 140000000000000,
) -> list[tuple[str, str]]:
    """The header lines Asterisk sends, in its order (launch_netscript, then setup_env)."""
    lines = [("agi_network", "yes")]
    if script:
        lines.append(("agi_network_script", script))
    lines += [
        ("agi_request", f"agi://{host}:{port}/{script}"),
        ("agi_channel", channel),
        ("agi_language", language),
        ("agi_type", channel.partition("/")[0] or "SIP"),
        ("agi_uniqueid", uniqueid),
        ("agi_version", SIMULATED_VERSION),
        ("agi_callerid", callerid or "unknown"),
        ("agi_calleridname", calleridname or "unknown"),
        ("agi_callingpres", "0"),
        ("agi_callingani2", "0"),
        ("agi_callington", "0"),
        ("agi_callingtns", "0"),
        ("agi_dnid", dnid),
        ("agi_rdnis", "unknown"),
        ("agi_context", context),
        ("agi_extension", extension),
        ("agi_priority", "1"),
        ("agi_enhanced", "0.0"),
        ("agi_accountcode", ""),
        ("agi_threadid", str(threadid)),
    ]
    lines += [(f"agi_arg_{i}", str(arg)) for i, arg in enumerate(args, start=1)]
    return lines


class SimulatorProtocol(LineOnlyReceiver):
    """The Asterisk end of one FastAGI connection."""

    delimiter = b"\n"
    MAX_LENGTH = 1 << 20

    def __init__(
        self,
        engine: SimulatedChannel,
        header: Iterable[tuple[str, str]],
        *,
        clock: IReactorTime,
        timeout_s: float,
        hangup_at_command: int | None = None,
        hangup_when_idle_after: float | None = None,
    ) -> None:
        self.engine = engine
        self.header = list(header)
        self.clock = clock
        self.timeout_s = timeout_s
        self.hangup_at_command = hangup_at_command
        self.hangup_when_idle_after = hangup_when_idle_after
        self.commands: list[str] = []
        self.timed_out = False
        self.done: defer.Deferred[None] = defer.Deferred()
        self._queue: deque[str] = deque()
        self._busy = False
        self._lost = False
        self._idle: IDelayedCall | None = None
        self._deadline: IDelayedCall | None = None

    def connectionMade(self) -> None:
        text = "".join(f"{key}: {value}\n" for key, value in self.header) + "\n"
        self.transport.write(text.encode("utf-8"))
        self._deadline = self.clock.callLater(self.timeout_s, self._give_up)
        self._arm_idle()

    def lineReceived(self, raw: bytes) -> None:
        self._cancel(self._idle)
        # res_agi reads at most 2047 bytes per command: a longer line becomes two commands.
        data = raw + b"\n"
        for i in range(0, len(data), ASTERISK_COMMAND_BUFFER):
            piece = data[i : i + ASTERISK_COMMAND_BUFFER]
            if piece.endswith(b"\n"):
                piece = piece[:-1]
            self._queue.append(piece.decode("utf-8", errors="replace"))
        if not self._busy:
            self._busy = True
            defer.Deferred.fromCoroutine(self._drain()).addErrback(self._crashed)

    async def _drain(self) -> None:
        try:
            while self._queue and not self._lost:
                line = self._queue.popleft()
                self.commands.append(line)
                step = await self.engine.execute(line)
                if self._lost:
                    return
                self._write(*step.lines)
                if step.hangup is not None:
                    self._write("HANGUP")
                elif len(self.commands) == self.hangup_at_command and self.engine.hang_up(
                    "caller", f"after command {self.hangup_at_command}"
                ):
                    self._write("HANGUP")
        finally:
            self._busy = False
        self._arm_idle()

    def _crashed(self, failure: Failure) -> None:
        log.failure("call simulator crashed", failure=failure)
        if self.transport is not None:
            self.transport.abortConnection()

    def _write(self, *lines: str) -> None:
        if not self._lost:
            self.transport.write("".join(line + "\n" for line in lines).encode("utf-8"))

    def _arm_idle(self) -> None:
        self._cancel(self._idle)
        if self.hangup_when_idle_after is not None and not self.engine.dead and not self._lost:
            self._idle = self.clock.callLater(self.hangup_when_idle_after, self._idle_hangup)

    def _idle_hangup(self) -> None:
        self._idle = None
        if not self._busy and self.engine.hang_up("caller", "while the server was idle"):
            self._write("HANGUP")

    def _give_up(self) -> None:
        self._deadline = None
        self.timed_out = True
        self.engine.event("sim-timeout", f"{self.timeout_s:g}")
        if self.engine.hang_up("caller", "simulator timeout"):
            self._write("HANGUP")
        self.transport.loseConnection()

    @staticmethod
    def _cancel(call: IDelayedCall | None) -> None:
        if call is not None and call.active():
            call.cancel()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._lost = True
        self._cancel(self._idle)
        self._cancel(self._deadline)
        if not self.engine.dead:
            self.engine.hung_up_by = "server"
            self.engine.event("closed")
        self.done.callback(None)


async def simulate_call(
    host: str,
    port: int,
    *,
    script: str = "loyalty",
    callerid: str | None,
    language: str = "zh",
    keys: str = "",
    prompt_text: PromptText | None = None,
    hangup_at_command: int | None = None,
    hangup_when_idle_after: float | None = None,
    args: Sequence[str] = (),
    uniqueid: str | None = None,
    timeout_s: float = 30.0,
    variables: Mapping[str, str] | None = None,
    dnid: str = "unknown",
    key_source: KeySource | None = None,
    on_event: Callable[[Event], None] | None = None,
    reactor: Any = None,
    sounds_dir: str | Path | None = None,
) -> CallResult:
    """Place one simulated call and return what happened.

    ``keys``: DTMF ``0-9*#A-D``, ``T`` (input times out), ``H`` (hang up now).
    ``prompt_text(name, language)`` returns a prompt's text, or None for a missing file
    (without it every prompt exists). ``hangup_at_command=N`` hangs up right after the reply to
    the Nth command; ``hangup_when_idle_after=s`` hangs up when the server sends nothing for s
    seconds. ``timeout_s`` bounds the whole call. ``RECORD FILE`` with a relative name writes
    under ``sounds_dir`` (default: a new temporary directory).
    """
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    n = next(_call_ids)
    channel = f"SIP/sim-{n:08x}"
    # Like Asterisk with ``systemname`` set: the process id keeps two simulators started in
    # the same second from reusing each other's call ids.
    uniqueid = uniqueid or f"sim{os.getpid()}-{int(time.time())}.{n}"
    engine = SimulatedChannel(
        name=channel,
        language=language,
        callerid=callerid or "unknown",
        uniqueid=uniqueid,
        keys=key_source if key_source is not None else KeySource(keys),
        prompt_text=prompt_text,
        variables=dict(variables or {}),
        on_event=on_event,
    )
    if sounds_dir is not None:
        engine.sounds_dir = Path(sounds_dir)
    header = build_header(
        host,
        port,
        script,
        channel=channel,
        language=language,
        uniqueid=uniqueid,
        callerid=callerid,
        dnid=dnid,
        args=args,
        threadid=140000000000000 + n,
    )
    proto = SimulatorProtocol(
        engine,
        header,
        clock=reactor,
        timeout_s=timeout_s,
        hangup_at_command=hangup_at_command,
        hangup_when_idle_after=hangup_when_idle_after,
    )
    endpoint = endpoints.TCP4ClientEndpoint(reactor, host, port, timeout=10)
    await endpoints.connectProtocol(endpoint, proto)
    await proto.done
    return CallResult(
        transcript=engine.transcript,
        variables_set=dict(engine.variables_set),
        commands=list(proto.commands),
        hung_up_by=engine.hung_up_by or "server",
        timed_out=proto.timed_out,
        channel=channel,
        uniqueid=uniqueid,
        remaining_keys=engine.keys.remaining,
        recordings=dict(getattr(engine, "recordings", {})),
    )


async def run_many(
    host: str,
    port: int,
    n: int,
    make_kwargs: Callable[[int], Mapping[str, Any]],
    *,
    concurrency: int | None = None,
) -> list[CallResult]:
    """Run ``n`` calls at once (at most ``concurrency`` in flight); ``make_kwargs(i)`` gives the
    keyword arguments of ``simulate_call`` for call ``i``. Results are in call order."""
    semaphore = defer.DeferredSemaphore(concurrency) if concurrency else None

    def start(i: int) -> defer.Deferred[CallResult]:
        kwargs = dict(make_kwargs(i))
        return defer.Deferred.fromCoroutine(simulate_call(host, port, **kwargs))

    calls = [semaphore.run(start, i) if semaphore else start(i) for i in range(n)]
    try:
        return await defer.gatherResults(calls, consumeErrors=True)
    except defer.FirstError as e:
        e.subFailure.raiseException()
        raise  # unreachable
