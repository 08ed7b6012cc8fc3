"""FastAGI wire format, with no I/O: argument quoting, reply parsing, header lines.

Facts from Asterisk's ``res/res_agi.c`` that this module encodes:

- Asterisk parses a command line into words itself: a double quote toggles quoting, a backslash
  makes the next character literal, spaces and tabs separate words outside quotes. So every
  argument we send is ``"..."`` with ``\\`` and ``"`` backslash-escaped.
- It reads a command into a 2048-byte buffer with ``fgets``: a line longer than 2047 bytes
  (newline included) is cut and the rest is run as a second command. We refuse such lines.
- Replies: ``200 result=N [(data)] [endpos=N]``; ``510 Invalid or unknown command``;
  ``511 Command Not Permitted on a dead channel[ or intercept routine]``; ``520 ...`` for bad
  usage, either one line or a block ``520-Invalid command syntax.  Proper usage follows:``,
  free usage text, then ``520 End of proper usage.``.
- ``HANGUP`` on a line of its own is an out-of-band event sent after the caller hung up (after
  the reply to the command that was running); it is never a reply.
- Commands allowed on a dead channel (the ``dead`` column of res_agi's command table): EXEC,
  GET VARIABLE, GET FULL VARIABLE, SET VARIABLE, VERBOSE, NOOP, DATABASE *, ASYNCAGI BREAK,
  SPEECH DESTROY, SPEECH UNLOAD GRAMMAR. Anything else gets 511 after a hang-up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_LINE_BYTES = 8192
"""Longest line we accept from the peer; a longer one drops the connection."""

MAX_COMMAND_BYTES = 2047
"""Longest command line (newline included) Asterisk reads as one command."""

HANGUP_LINE = "HANGUP"

DEFAULT_DATETIME_FORMAT = "ABdY 'digits/at' IMp"
"""res_agi's SAY DATETIME format when none is given (non-German languages)."""

_DEAD_OK = (
    ("EXEC",),
    ("GET", "VARIABLE"),
    ("GET", "FULL", "VARIABLE"),
    ("SET", "VARIABLE"),
    ("VERBOSE",),
    ("NOOP",),
    ("DATABASE",),
    ("ASYNCAGI", "BREAK"),
    ("SPEECH", "DESTROY"),
    ("SPEECH", "UNLOAD", "GRAMMAR"),
)


class AGIError(Exception):
    """Base class of FastAGI errors."""


class AGICommandError(AGIError):
    """Asterisk refused a command: 510 (unknown command), 520 (usage) or another 5xx."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text


class ChannelHungUp(AGIError):
    """The call is over: the caller hung up, the channel is dead, or the connection is gone.

    ``reason`` is one of ``hangup`` (HANGUP line seen), ``dead-channel`` (511 reply),
    ``connection-lost``, ``timeout`` (peer silent), ``line-too-long``, ``protocol-error``.
    """

    def __init__(self, reason: str = "hangup") -> None:
        super().__init__(reason)
        self.reason = reason

    @property
    def outcome(self) -> str:
        """The call outcome this stands for (observer / log vocabulary)."""
        return "hangup" if self.reason in ("hangup", "dead-channel") else self.reason


class AGIProtocolError(AGIError):
    """The peer broke the protocol (garbage line, reply with no command)."""


@dataclass(frozen=True)
class AGIReply:
    """One parsed ``200`` reply.

    ``result`` is the integer after ``result=`` when it is one; ``result_text`` is the raw token
    (GET DATA returns a digit string such as ``0012`` or ``*1``, or nothing when ``#`` was
    pressed first, so use ``result_text`` for it).
    """

    code: int
    result: int | None
    data: str | None
    endpos: int | None
    raw: str
    result_text: str = ""


@dataclass(frozen=True)
class HangupEvent:
    """The out-of-band ``HANGUP`` line."""


HANGUP_EVENT = HangupEvent()

_REPLY_200 = re.compile(
    r"^200 result=(?P<result>\S*)"
    r"(?: \((?P<data>.*)\))?"
    r"(?: endpos=(?P<endpos>-?\d{1,18}))?"
    r"(?P<rest>.*)$"
)
_CODE = re.compile(r"^(?P<code>\d{3})(?P<sep>[ -]|$)(?P<text>.*)$")
_INT = re.compile(r"^-?\d{1,18}$")  # longer is garbage, and int() of it is costly


def quote_arg(value: object) -> str:
    """One argument as Asterisk's parser wants it: double-quoted, ``\\`` and ``"`` escaped.

    Newlines (and CR, NUL) are refused: they would end the command line early.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError(f"AGI arguments are str or int, not {type(value).__name__}")
    text = str(value)
    if any(ch in text for ch in "\n\r\x00"):
        raise ValueError("an AGI argument cannot contain a newline, CR or NUL")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def build_command(verb: str, *args: object) -> str:
    """``VERB "arg1" "arg2"``; checks the result fits Asterisk's command buffer."""
    line = " ".join([verb, *(quote_arg(a) for a in args)])
    check_command_line(line)
    return line


def check_command_line(line: str) -> None:
    if any(ch in line for ch in "\n\r\x00"):
        raise ValueError("an AGI command line cannot contain a newline, CR or NUL")
    try:
        size = len(line.encode("utf-8"))
    except UnicodeEncodeError as e:
        raise ValueError("an AGI command must be valid Unicode text") from e
    if size + 1 > MAX_COMMAND_BYTES:
        raise ValueError(f"AGI command longer than {MAX_COMMAND_BYTES - 1} bytes")


def command_words(line: str) -> tuple[str, ...]:
    """Upper-cased leading words of a command line (up to the first quoted argument)."""
    words = []
    for word in line.split():
        if word.startswith('"'):
            break
        words.append(word.upper())
    return tuple(words)


def allowed_on_dead_channel(line: str) -> bool:
    words = command_words(line)
    return any(words[: len(prefix)] == prefix for prefix in _DEAD_OK)


def parse_200(line: str) -> AGIReply:
    m = _REPLY_200.match(line)
    if m is None:
        raise AGIProtocolError(f"malformed 200 reply: {line!r}")
    token = m.group("result")
    endpos = m.group("endpos")
    return AGIReply(
        code=200,
        result=int(token) if _INT.match(token) else None,
        data=m.group("data"),
        endpos=int(endpos) if endpos is not None else None,
        raw=line,
        result_text=token,
    )


MAX_USAGE_BYTES = 64 * 1024  # res_agi's longest usage text is a few KiB


class ReplyAssembler:
    """Turns received lines into replies and events, one line at a time.

    ``feed`` returns an ``AGIReply``, ``HANGUP_EVENT``, an exception instance
    (``AGICommandError`` / ``ChannelHungUp`` for 511) or ``None`` while a 520 block is open.
    Lines that are none of these raise ``AGIProtocolError``.
    """

    def __init__(self) -> None:
        self._block: list[str] | None = None
        self._block_bytes = 0

    @property
    def in_block(self) -> bool:
        return self._block is not None

    def feed(self, line: str) -> AGIReply | HangupEvent | AGIError | None:
        if self._block is not None:
            self._block.append(line)
            self._block_bytes += len(line) + 1
            if self._block_bytes > MAX_USAGE_BYTES:
                self._block = None
                raise AGIProtocolError("520 usage block never ends")
            if line.startswith("520 "):
                text = "\n".join(self._block)
                self._block = None
                return AGICommandError(520, text)
            return None
        if line == HANGUP_LINE:
            return HANGUP_EVENT
        m = _CODE.match(line)
        if m is None:
            raise AGIProtocolError(f"unexpected line from Asterisk: {line[:80]!r}")
        code = int(m.group("code"))
        if code == 200:
            return parse_200(line)
        if code == 100:
            return None  # provisional ("100 result=0 Trying..." from GOSUB): the 200 follows
        if code == 520 and m.group("sep") == "-":
            self._block, self._block_bytes = [m.group("text")], len(line)
            return None
        if code == 511:
            return ChannelHungUp("dead-channel")
        return AGICommandError(code, m.group("text"))


def parse_header_line(line: str) -> tuple[str, str] | None:
    """``agi_callerid: 138...`` -> ``("callerid", "138...")``; None for a line without a colon.

    Splits on the first colon (values may hold colons, e.g. ``agi_request: agi://h:4573/x``),
    drops one following space, keeps empty and ``unknown`` values as they are.
    """
    key, sep, value = line.partition(":")
    if not sep or not key.strip():
        return None
    key = key.strip()
    if key.startswith("agi_"):
        key = key[4:]
    if value.startswith(" "):
        value = value[1:]
    return key, value


def normalize_script(raw: str) -> tuple[str, str]:
    """``agi_network_script`` -> (script name, query string).

    Asterisk sends what follows the first ``/`` of ``agi://host:port/...``: ``loyalty``,
    ``loyalty?lang=en``, ``?extension=100``. We also strip a leading or trailing ``/``.
    """
    name, _, query = raw.strip().partition("?")
    return name.strip("/"), query

