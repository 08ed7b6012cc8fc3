"""What a call flow holds: one FastAGI call, with one async method per AGI command.

Results are parsed: digits come back from Asterisk as ASCII codes (``49`` is ``'1'``) and are
returned as one-character strings. ``result=-1`` from a prompt command means "failed"; a
missing prompt file gives exactly the same reply as a hang-up, so a ``-1`` never ends the call
by itself: the method returns ``None`` and sets ``last_failed``. Only a ``HANGUP`` line, a 511
reply or the loss of the connection end the call, as ``ChannelHungUp``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import parse_qsl

from ivr.agi_wire import (
    DEFAULT_DATETIME_FORMAT,
    AGIProtocolError,
    AGIReply,
    ChannelHungUp,
    allowed_on_dead_channel,
    build_command,
    check_command_line,
    normalize_script,
)

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

DTMF = frozenset("0123456789*#ABCD")


class _Link(Protocol):
    """The protocol side of a channel (see ``ivr.agi.FastAGIProtocol``)."""

    closed: bool
    close_reason: str | None
    hangup_seen: bool

    def send_command(self, line: str, extra_wait_s: float = 0.0) -> Deferred[AGIReply]: ...


@dataclass(frozen=True)
class RecordResult:
    """RECORD FILE outcome: the escape ``key`` that ended it (None: timeout or hang-up), why
    (``dtmf``, ``timeout``, ``hangup``, ``writefile``...), the samples recorded, ``failed`` on
    ``result=-1``."""

    key: str | None
    why: str
    samples: int
    failed: bool = False


@dataclass(frozen=True)
class GetDataResult:
    """GET DATA outcome: ``digits`` typed (``*`` included, ``#`` not), ``timed_out`` when the
    caller stopped typing, ``failed`` on ``result=-1`` (missing prompt, or a hang-up that the
    next command will report)."""

    digits: str
    timed_out: bool
    failed: bool = False


class AGIChannel:
    """One call as seen by a flow. ``env`` holds the header fields without ``agi_``."""

    def __init__(self, env: dict[str, str], link: _Link) -> None:
        self.env = dict(env)
        self._link = link
        self._hung_up_locally = False
        self.last_reply: AGIReply | None = None
        self.last_failed = False
        self.script, self.query_string = normalize_script(self.env.get("network_script", ""))

    # -- header-derived attributes ------------------------------------------------------------

    @property
    def uniqueid(self) -> str:
        return self.env.get("uniqueid", "")

    @property
    def language(self) -> str:
        return self.env.get("language", "")

    @property
    def callerid(self) -> str | None:
        """The caller's number, or None when Asterisk sent ``unknown`` or nothing."""
        value = self.env.get("callerid", "")
        return None if value in ("", "unknown") else value

    @property
    def args(self) -> list[str]:
        """``agi_arg_1``, ``agi_arg_2``... in order."""
        numbered = []
        for key, value in self.env.items():
            if key.startswith("arg_") and key[4:].isascii() and key[4:].isdecimal():
                numbered.append((int(key[4:]), value))
        return [value for _, value in sorted(numbered)]

    @property
    def query(self) -> dict[str, str]:
        """Parameters of ``agi://host/script?a=1&b=2``."""
        return dict(parse_qsl(self.query_string, keep_blank_values=True))

    @property
    def hung_up_locally(self) -> bool:
        """True once this side sent HANGUP."""
        return self._hung_up_locally

    @property
    def hung_up(self) -> bool:
        """True once the caller hung up, we hung up, or the connection is gone."""
        return self._link.hangup_seen or self._link.closed or self._hung_up_locally

    # -- raw command ----------------------------------------------------------------------------

    async def command(self, line: str) -> AGIReply:
        """Send one raw command line (already quoted) and return its parsed 200 reply.

        Raises ``AGICommandError`` on 510/520, ``ChannelHungUp`` on 511 or when the channel is
        already hung up and the command needs a live channel.
        """
        check_command_line(line)
        return await self._run(line, live=not allowed_on_dead_channel(line))

    async def _run(self, line: str, *, live: bool = True, extra_wait_s: float = 0.0) -> AGIReply:
        if self._link.closed:
            raise ChannelHungUp(self._link.close_reason or "connection-lost")
        if live and self.hung_up:
            raise ChannelHungUp("hangup")
        reply = await self._link.send_command(line, extra_wait_s)
        self.last_reply = reply
        return reply

    def _digit(self, reply: AGIReply) -> str | None:
        """Result of a prompt/say/wait command: the digit pressed, or None."""
        if reply.result is None:
            raise AGIProtocolError(f"expected a numeric result: {reply.raw!r}")
        self.last_failed = reply.result < 0
        if reply.result <= 0:
            return None
        digit = chr(reply.result) if reply.result < 128 else ""
        if digit not in DTMF:
            raise AGIProtocolError(f"result is not a DTMF digit: {reply.raw[:80]!r}")
        return digit

    # -- commands -------------------------------------------------------------------------------

    async def answer(self) -> None:
        reply = await self._run("ANSWER")
        self.last_failed = reply.result is not None and reply.result < 0

    async def stream_file(self, name: str, escape_digits: str = "") -> str | None:
        """Play a prompt; the escape digit that interrupted it, or None."""
        return self._digit(await self._run(build_command("STREAM FILE", name, escape_digits)))

    async def get_data(self, name: str, timeout_ms: int, max_digits: int) -> GetDataResult:
        """Play a prompt and collect up to ``max_digits`` digits, ``#`` ending early.

        ``timeout_ms`` 0 means Asterisk's defaults (6 s for the first digit, 2 s after).
        """
        if max_digits < 1:
            raise ValueError("max_digits must be at least 1")
        per_digit_s = (timeout_ms if timeout_ms > 0 else 6000) / 1000.0
        extra = per_digit_s * (min(max_digits, 32) + 1)
        reply = await self._run(
            build_command("GET DATA", name, timeout_ms, max_digits), extra_wait_s=extra
        )
        if reply.result_text == "-1":
            self.last_failed = True
            return GetDataResult("", timed_out=False, failed=True)
        if any(ch not in DTMF for ch in reply.result_text):
            raise AGIProtocolError(f"GET DATA returned non-DTMF text: {reply.raw!r}")
        self.last_failed = False
        return GetDataResult(reply.result_text, timed_out=reply.data == "timeout")

    async def record_file(self, name: str, fmt: str, escape_digits: str, timeout_ms: int, *,
                          beep: bool = True, silence_s: int = 0) -> RecordResult:
        """RECORD FILE: record ``name``.``fmt`` until an escape digit, ``timeout_ms`` or the
        hang-up. The sample offset 0 is always sent: res_agi only beeps when ``BEEP`` is the
        word after the offset."""
        args: list[object] = [name, fmt, escape_digits, timeout_ms, 0]
        if beep:
            args.append("BEEP")
        if silence_s > 0:
            args.append(f"s={silence_s}")
        reply = await self._run(build_command("RECORD FILE", *args),
                                extra_wait_s=max(timeout_ms, 0) / 1000.0 + 2.0)
        result = reply.result if reply.result is not None else -1
        key = chr(result) if result > 0 and chr(result) in DTMF else None
        self.last_failed = result < 0
        return RecordResult(key, reply.data or "", reply.endpos or 0, failed=result < 0)

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        """One digit, or None on timeout (``last_failed`` set on ``-1``)."""
        extra = max(timeout_ms, 0) / 1000.0
        return self._digit(
            await self._run(build_command("WAIT FOR DIGIT", timeout_ms), extra_wait_s=extra)
        )

    async def say_number(self, number: int, escape_digits: str = "") -> str | None:
        if isinstance(number, bool) or not isinstance(number, int):
            raise TypeError("say_number takes an int")
        return self._digit(await self._run(build_command("SAY NUMBER", number, escape_digits)))

    async def say_digits(self, digits: str, escape_digits: str = "") -> str | None:
        return self._digit(await self._run(build_command("SAY DIGITS", digits, escape_digits)))

    async def say_alpha(self, text: str, escape_digits: str = "") -> str | None:
        return self._digit(await self._run(build_command("SAY ALPHA", text, escape_digits)))

    async def say_datetime(
        self, epoch_seconds: int, escape_digits: str = "", fmt: str = "", tz: str = ""
    ) -> str | None:
        """SAY DATETIME. res_agi takes any 5th word as the format, even an empty one (which
        says nothing), so with a time zone but no format we send res_agi's default format."""
        args: list[object] = [int(epoch_seconds), escape_digits]
        if fmt or tz:
            args.append(fmt or DEFAULT_DATETIME_FORMAT)
        if tz:
            args.append(tz)
        return self._digit(await self._run(build_command("SAY DATETIME", *args)))

    async def set_variable(self, name: str, value: str) -> None:
        await self._run(build_command("SET VARIABLE", name, str(value)), live=False)

    async def get_variable(self, name: str) -> str | None:
        reply = await self._run(build_command("GET VARIABLE", name), live=False)
        if reply.result == 1:
            return reply.data if reply.data is not None else ""
        return None

    async def exec_(self, app: str, args: str = "") -> int:
        """Run a dialplan application; its result (``-2`` when it does not exist)."""
        words = [app, args] if args else [app]
        reply = await self._run(build_command("EXEC", *words), live=False)
        return reply.result if reply.result is not None else 0

    async def verbose(self, message: str, level: int = 1) -> None:
        await self._run(build_command("VERBOSE", message, level), live=False)

    async def hangup(self) -> None:
        """Hang up the call. A no-op when it is already hung up (safe in ``finally``)."""
        if self.hung_up:
            return
        await self._run("HANGUP")
        self._hung_up_locally = True
