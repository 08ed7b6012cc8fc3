"""res_agi's command-line parser and command table, as the call simulator uses them."""

from __future__ import annotations

import re
from dataclasses import dataclass

UNKNOWN_COMMAND = "510 Invalid or unknown command"
DEAD_CHANNEL = "511 Command Not Permitted on a dead channel or intercept routine"
USAGE_START = "520-Invalid command syntax.  Proper usage follows:"
USAGE_END = "520 End of proper usage."


# -- res_agi's parser ---------------------------------------------------------------------------


def parse_agi_args(line: str) -> list[str]:
    """Split a command line into words exactly as res_agi's ``parse_args`` does."""
    words: list[list[str]] = []
    quoted = escaped = False
    between = True  # not inside a word
    for ch in line:
        if ch == '"' and not escaped:
            quoted = not quoted
            if quoted and between:
                words.append([])
                between = False
            continue
        if ch in " \t" and not quoted and not escaped:
            between = True
            continue
        if ch == "\\" and not escaped:
            escaped = True
            continue
        if between:
            words.append([])
            between = False
        words[-1].append(ch)
        escaped = False
    return ["".join(w) for w in words]


_SCAN_INT = re.compile(r"^\s*([+-]?\d+)")


def scan_int(text: str) -> int | None:
    """C ``sscanf("%d")``: a leading integer, or None."""
    m = _SCAN_INT.match(text)
    return int(m.group(1)) if m else None


def atoi(text: str) -> int:
    value = scan_int(text)
    return 0 if value is None else value


class ShowUsage(Exception):
    """RESULT_SHOWUSAGE."""


@dataclass(frozen=True)
class AGICommandSpec:
    words: tuple[str, ...]
    handler: str
    dead_ok: bool
    usage: str


def _cmd(words: str, handler: str, dead_ok: bool, usage: str) -> AGICommandSpec:
    return AGICommandSpec(tuple(words.split()), handler, dead_ok, usage)


COMMANDS: tuple[AGICommandSpec, ...] = (
    _cmd("ANSWER", "_answer", False, " Usage: ANSWER\n\tAnswers the channel."),
    _cmd(
        "CHANNEL STATUS",
        "_channel_status",
        False,
        " Usage: CHANNEL STATUS [<channelname>]\n\tReturns the state of the channel.",
    ),
    _cmd("EXEC", "_exec", True, " Usage: EXEC <application> <options>\n\tRuns an application."),
    _cmd(
        "GET DATA",
        "_get_data",
        False,
        " Usage: GET DATA <file to be streamed> [timeout] [max digits]\n"
        "\tPlays the file and collects DTMF digits, # ends input.",
    ),
    _cmd(
        "GET FULL VARIABLE",
        "_get_full_variable",
        True,
        " Usage: GET FULL VARIABLE <variablename> [<channel name>]\n\tEvaluates an expression.",
    ),
    _cmd(
        "GET OPTION",
        "_get_option",
        False,
        " Usage: GET OPTION <filename> <escape_digits> [timeout]\n"
        "\tLike STREAM FILE, then waits for one digit.",
    ),
    _cmd(
        "GET VARIABLE",
        "_get_variable",
        True,
        " Usage: GET VARIABLE <variablename>\n\tReturns 1 and the value in parentheses, or 0.",
    ),
    _cmd("HANGUP", "_hangup", False, " Usage: HANGUP [<channelname>]\n\tHangs up the channel."),
    _cmd("NOOP", "_noop", True, " Usage: NOOP\n\tDoes nothing."),
    _cmd(
        "RECORD FILE",
        "_record_file",
        False,
        " Usage: RECORD FILE <filename> <format> <escape digits> <timeout> [offset samples]"
        " [BEEP] [s=silence]\n\tRecords to a file until a digit in the escape digits is"
        " received.",
    ),
    _cmd(
        "SAY ALPHA",
        "_say_alpha",
        False,
        " Usage: SAY ALPHA <characters> <escape digits>\n\tSpells out the characters.",
    ),
    _cmd(
        "SAY DIGITS",
        "_say_digits",
        False,
        " Usage: SAY DIGITS <number> <escape digits>\n\tSays the digits one by one.",
    ),
    _cmd(
        "SAY NUMBER",
        "_say_number",
        False,
        " Usage: SAY NUMBER <number> <escape digits> [gender]\n\tSays the number.",
    ),
    _cmd(
        "SAY DATE",
        "_say_date",
        False,
        " Usage: SAY DATE <date> <escape digits>\n\tSays the date (seconds since the epoch).",
    ),
    _cmd(
        "SAY TIME",
        "_say_time",
        False,
        " Usage: SAY TIME <time> <escape digits>\n\tSays the time (seconds since the epoch).",
    ),
    _cmd(
        "SAY DATETIME",
        "_say_datetime",
        False,
        " Usage: SAY DATETIME <time> <escape digits> [format] [timezone]\n"
        "\tSays a date and time; default format \"ABdY 'digits/at' IMp\".",
    ),
    _cmd(
        "SET VARIABLE",
        "_set_variable",
        True,
        " Usage: SET VARIABLE <variablename> <value>\n\tSets a channel variable.",
    ),
    _cmd(
        "STREAM FILE",
        "_stream_file",
        False,
        " Usage: STREAM FILE <filename> <escape digits> [sample offset]\n"
        "\tPlays the file; returns the escape digit pressed, 0, or -1.",
    ),
    _cmd("VERBOSE", "_verbose", True, " Usage: VERBOSE <message> <level>\n\tLogs a message."),
    _cmd(
        "WAIT FOR DIGIT",
        "_wait_for_digit",
        False,
        " Usage: WAIT FOR DIGIT <timeout>\n\tWaits up to <timeout> ms (-1: forever) for a digit.",
    ),
)


def find_command(argv: list[str]) -> AGICommandSpec | None:
    upper = [word.upper() for word in argv]
    for command in COMMANDS:
        n = len(command.words)
        if len(upper) >= n and tuple(upper[:n]) == command.words:
            return command
    return None
