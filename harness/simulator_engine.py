"""The Asterisk side of a simulated call: res_agi's command handling and a scripted caller.

No networking here (see ``harness.simulator`` for the Twisted client). Behaviour follows
``res/res_agi.c``:

- Command lines are split by res_agi's own rules (quotes toggle, backslash escapes the next
  character, spaces/tabs separate words) and matched word by word, case-insensitively.
- Unknown command: ``510 Invalid or unknown command``. Wrong arguments: the block
  ``520-Invalid command syntax.  Proper usage follows:`` / usage text / ``520 End of proper
  usage.``. On a dead channel, commands not allowed dead get ``511 Command Not Permitted on a
  dead channel or intercept routine``; GET/SET VARIABLE, VERBOSE, EXEC, NOOP still work.
- STREAM FILE / GET OPTION with a missing file: ``200 result=-1 endpos=<offset>``, the very reply
  a hang-up gives. GET DATA with a missing prompt: ``200 result=-1`` (``ast_app_getdata_full``
  returns -1 when ``ast_streamfile`` fails). GET DATA answers ``200 result=<digits>``,
  ``200 result=<digits> (timeout)``, or ``200 result=`` when ``#`` comes first; ``#`` ends input,
  ``*`` is a digit, a key pressed during the prompt interrupts it and counts.
- Digits come back as ASCII codes; SAY * and STREAM FILE return 0 when played to the end.

The caller's keys are a string used one character at a time at input opportunities:
DTMF ``0-9 * # A-D``, ``T`` (this input times out), ``H`` (hang up now: during the next prompt
or input). Whitespace is ignored. A prompt with escape digits is interrupted only when the next
key is one of them; otherwise it plays to the end and the key waits for the next input. When
the keys run out, every input times out (a silent caller).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from harness.simulator_commands import (
    DEAD_CHANNEL,
    UNKNOWN_COMMAND,
    USAGE_END,
    USAGE_START,
    ShowUsage,
    atoi,
    find_command,
    parse_agi_args,
    scan_int,
)
from harness.simulator_record import RecordFile
from harness.simulator_transcript import CALLER_KEYS, DTMF_KEYS, Event, KeySource, Transcript

__all__ = [
    "CALLER_KEYS",
    "DTMF_KEYS",
    "Event",
    "KeySource",
    "PromptText",
    "SimulatedChannel",
    "Step",
    "Transcript",
    "parse_agi_args",
]

DEFAULT_DATETIME_FORMAT = "ABdY 'digits/at' IMp"
SAMPLES_PER_CHAR = 2000  # simulated prompt length: 8 kHz samples per character of text

PromptText = Callable[[str, str], "str | None"]


# -- the simulated channel ------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """Reply lines for one command; ``hangup`` (caller/server) means send ``HANGUP`` after."""

    lines: list[str]
    hangup: str | None = None


class SimulatedChannel(RecordFile):
    """res_agi plus a channel plus a caller, minus the audio (recordings are silent WAVs)."""

    def __init__(
        self,
        *,
        name: str,
        language: str,
        callerid: str,
        uniqueid: str,
        keys: KeySource,
        prompt_text: PromptText | None = None,
        variables: dict[str, str] | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self.name = name
        self.language = language
        self.callerid = callerid
        self.uniqueid = uniqueid
        self.keys = keys
        self.prompt_text = prompt_text
        self.on_event = on_event
        self.transcript = Transcript()
        self.variables_set: dict[str, str] = {}
        self._vars = dict(variables or {})
        self.dead = False
        self.answered = False
        self.hung_up_by: str | None = None
        self._hangup_after: str | None = None

    def event(self, kind: str, value: str = "", detail: str = "", cut: bool = False) -> None:
        ev = Event(kind, value, detail, cut)
        self.transcript.append(ev)
        if self.on_event is not None:
            self.on_event(ev)

    def hang_up(self, who: str, why: str = "") -> bool:
        """Mark the channel dead; False if it already was."""
        if self.dead:
            return False
        self.dead = True
        self.hung_up_by = who
        self.event("hangup", who, why)
        return True

    async def execute(self, line: str) -> Step:
        argv = parse_agi_args(line)
        command = find_command(argv)
        if command is None:
            return Step([UNKNOWN_COMMAND])
        if self.dead and not command.dead_ok:
            return Step([DEAD_CHANNEL])
        self._hangup_after = None
        try:
            lines = await getattr(self, command.handler)(argv)
        except ShowUsage:
            lines = [USAGE_START, *command.usage.splitlines(), USAGE_END]
        return Step(lines, self._hangup_after)

    # -- helpers --------------------------------------------------------------------------------

    def _caller_hangs_up(self) -> None:
        if self.hang_up("caller"):
            self._hangup_after = "caller"

    def _resolve(self, name: str) -> str | None:
        if self.prompt_text is None:
            return name
        return self.prompt_text(name, self.language)

    async def _play(self, kind: str, value: str, escape: str, detail: str = "") -> int:
        """Something the caller hears and may interrupt: the digit's code, 0, or -1 (hang-up)."""
        if escape:
            await self.keys.ensure("barge", escape)
        key = self.keys.peek()
        if key == "H":
            self.keys.pop()
            self.event(kind, value, detail, cut=True)
            self._caller_hangs_up()
            return -1
        if key is not None and key in DTMF_KEYS and key in escape:
            self.keys.pop()
            self.event(kind, value, detail, cut=True)
            self.event("keys", key)
            return ord(key)
        self.event(kind, value, detail)
        return 0

    async def _one_digit(self) -> int:
        """WAIT FOR DIGIT semantics: the digit's code, 0 on timeout, -1 on hang-up."""
        await self.keys.ensure("digit")
        key = self.keys.pop()
        if key is None or key == "T":
            self.event("timeout")
            return 0
        if key == "H":
            self._caller_hangs_up()
            return -1
        self.event("keys", key)
        return ord(key)

    def _when(self, epoch: int, tz: str) -> str:
        try:
            zone = ZoneInfo(tz) if tz else ZoneInfo("UTC")
        except (ZoneInfoNotFoundError, ValueError):
            zone, tz = ZoneInfo("UTC"), f"UTC (unknown zone {tz!r})"
        return datetime.fromtimestamp(epoch, zone).strftime("%Y-%m-%d %H:%M:%S") + f" {tz or 'UTC'}"

    # -- command handlers (argv includes the command words) -------------------------------------

    async def _answer(self, argv: list[str]) -> list[str]:
        if not self.answered:
            self.answered = True
            self.event("answer")
        return ["200 result=0"]

    async def _channel_status(self, argv: list[str]) -> list[str]:
        if len(argv) not in (2, 3):
            raise ShowUsage
        if len(argv) == 3 and argv[2] != self.name:
            return ["200 result=-1"]
        return [f"200 result={6 if self.answered else 4}"]

    async def _exec(self, argv: list[str]) -> list[str]:
        if len(argv) < 2:
            raise ShowUsage
        options = argv[2] if len(argv) > 2 else ""
        self.event("exec", f"{argv[1]}({options})")
        return [f"200 result={-1 if self.dead else 0}"]

    async def _get_data(self, argv: list[str]) -> list[str]:
        if len(argv) < 3:
            raise ShowUsage
        max_digits = atoi(argv[4]) if len(argv) >= 5 else 1024
        name, text = argv[2], None
        if name:
            text = self._resolve(name)
            if text is None:
                self.event("missing-prompt", name, self.language)
                return ["200 result=-1"]
        if max_digits == 0:
            return ["200 result=-1"]
        await self.keys.ensure("digits")
        if name:
            first = self.keys.peek()
            self.event("prompt", name, text or "", cut=first not in (None, "T"))
        digits, pressed = "", ""
        while True:
            await self.keys.ensure("more-digits" if pressed else "digits")
            key = self.keys.pop()
            if key is None or key == "T":
                if pressed:
                    self.event("keys", pressed)
                self.event("timeout")
                return [f"200 result={digits} (timeout)"]
            if key == "H":
                if pressed:
                    self.event("keys", pressed)
                self._caller_hangs_up()
                return ["200 result=-1"]
            pressed += key
            if key != "#":
                digits += key
            if key == "#" or len(digits) >= max_digits:
                self.event("keys", pressed)
                return [f"200 result={digits}"]

    async def _get_option(self, argv: list[str]) -> list[str]:
        if not 4 <= len(argv) <= 5:
            raise ShowUsage
        name, escape = argv[2], argv[3]
        text = self._resolve(name)
        if text is None:
            self.event("missing-prompt", name, self.language)
            return ["200 result=-1 endpos=0"]
        length = SAMPLES_PER_CHAR * max(1, len(text))
        res = await self._play("prompt", name, escape, text)
        if res == 0:
            res = await self._one_digit()
            if res > 0 and chr(res) not in escape:
                res = 0
            return [f"200 result={res} endpos={length}"]
        return [f"200 result={res} endpos={length // 2}"]

    def _lookup(self, name: str) -> str | None:
        builtins = {
            "CALLERID(NUM)": self.callerid,
            "CHANNEL(LANGUAGE)": self.language,
            "UNIQUEID": self.uniqueid,
            "CHANNEL": self.name,
        }
        if name.upper() in builtins:
            return builtins[name.upper()]
        return self._vars.get(name)

    async def _get_variable(self, argv: list[str]) -> list[str]:
        if len(argv) != 3:
            raise ShowUsage
        value = self._lookup(argv[2])
        return ["200 result=0"] if value is None else [f"200 result=1 ({value})"]

    async def _get_full_variable(self, argv: list[str]) -> list[str]:
        if len(argv) not in (4, 5):
            raise ShowUsage
        value = re.sub(r"\$\{([^}]*)\}", lambda m: self._lookup(m.group(1)) or "", argv[3])
        return [f"200 result=1 ({value})"]

    async def _hangup(self, argv: list[str]) -> list[str]:
        if len(argv) > 2:
            raise ShowUsage
        if len(argv) == 2 and argv[1] != self.name:
            return ["200 result=-1"]
        if self.hang_up("server"):
            self._hangup_after = "server"
        return ["200 result=1"]

    async def _noop(self, argv: list[str]) -> list[str]:
        return ["200 result=0"]

    async def _say_alpha(self, argv: list[str]) -> list[str]:
        if len(argv) != 4:
            raise ShowUsage
        return [f"200 result={await self._play('alpha', argv[2], argv[3])}"]

    async def _say_digits(self, argv: list[str]) -> list[str]:
        if len(argv) != 4 or scan_int(argv[2]) is None:
            raise ShowUsage
        return [f"200 result={await self._play('digits', argv[2], argv[3])}"]

    async def _say_number(self, argv: list[str]) -> list[str]:
        number = scan_int(argv[2]) if len(argv) > 2 else None
        if not 4 <= len(argv) <= 5 or number is None:
            raise ShowUsage
        return [f"200 result={await self._play('number', str(number), argv[3])}"]

    async def _say_date(self, argv: list[str]) -> list[str]:
        return await self._say_epoch(argv, "date", "%Y-%m-%d")

    async def _say_time(self, argv: list[str]) -> list[str]:
        return await self._say_epoch(argv, "time", "%H:%M:%S")

    async def _say_epoch(self, argv: list[str], kind: str, pattern: str) -> list[str]:
        epoch = scan_int(argv[2]) if len(argv) > 2 else None
        if len(argv) != 4 or epoch is None:
            raise ShowUsage
        said = datetime.fromtimestamp(epoch, ZoneInfo("UTC")).strftime(pattern) + " UTC"
        return [f"200 result={await self._play(kind, str(epoch), argv[3], said)}"]

    async def _say_datetime(self, argv: list[str]) -> list[str]:
        epoch = scan_int(argv[2]) if len(argv) > 2 else None
        if len(argv) < 4 or epoch is None:
            raise ShowUsage
        fmt = argv[4] if len(argv) > 4 else DEFAULT_DATETIME_FORMAT
        tz = argv[5] if len(argv) > 5 else ""
        said = self._when(epoch, tz) + f" format={fmt!r}"
        if not fmt:
            said += " (empty format: nothing is said)"
        return [f"200 result={await self._play('datetime', str(epoch), argv[3], said)}"]

    async def _set_variable(self, argv: list[str]) -> list[str]:
        if len(argv) != 4:
            raise ShowUsage
        name, value = argv[2], argv[3]
        self._vars[name] = value
        self.variables_set[name] = value
        if name.upper() == "CHANNEL(LANGUAGE)":
            self.language = value
        self.event("variable", f"{name}={value}")
        return ["200 result=1"]

    async def _stream_file(self, argv: list[str]) -> list[str]:
        if not 4 <= len(argv) <= 5:
            raise ShowUsage
        offset = scan_int(argv[4]) if len(argv) > 4 else 0
        if offset is None:
            raise ShowUsage
        name, escape = argv[2], argv[3]
        if self.recorded(name) is not None:  # a recording of this call, played back
            res = await self._play("playback", name, escape)
            return [f"200 result={res} endpos={8000 if res == 0 else 4000}"]
        text = self._resolve(name)
        if text is None:
            self.event("missing-prompt", name, self.language)
            return [f"200 result=-1 endpos={offset}"]
        length = SAMPLES_PER_CHAR * max(1, len(text))
        res = await self._play("prompt", name, escape, text)
        endpos = length if res == 0 else max(offset, length // 2)
        return [f"200 result={res} endpos={endpos}"]

    async def _verbose(self, argv: list[str]) -> list[str]:
        if len(argv) < 2:
            raise ShowUsage
        self.event("verbose", argv[1])
        return ["200 result=1"]

    async def _wait_for_digit(self, argv: list[str]) -> list[str]:
        if len(argv) != 4 or scan_int(argv[3]) is None:
            raise ShowUsage
        return [f"200 result={await self._one_digit()}"]
