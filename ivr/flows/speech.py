"""What a caller hears: prompts by id, numbers, digit strings, letters and dates.

A flow builds a sequence of pieces and ``Voice.play`` sends one AGI command per piece, stopping
at the first key the caller presses (barge-in). A plain ``str`` piece is a prompt id from
``prompts/manifest.toml``; it is played as ``<sounds_subdir>/<id>`` so the channel language
picks the zh or en recording.

A piece that cannot be played never ends the call: a missing prompt file (``result=-1``) is
skipped, as is a piece Asterisk refuses (510/520) or that cannot be sent (too long). Only
``ChannelHungUp`` gets through.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from twisted.logger import Logger

from ivr.agi_channel import AGIChannel, GetDataResult
from ivr.agi_wire import AGICommandError
from prompts.presence import PromptPresence
from prompts.say import date_format

log = Logger()

MENU_KEYS = "0123456789*#"
"""Escape digits of menu prompts: any key interrupts them."""

SKIP_KEY = "#"
"""Escape digits of read-outs (balances, dates, order numbers): only # skips the rest, so a
caller who already pressed a key for the next question still hears the answer."""

NO_KEYS = ""


@dataclass(frozen=True)
class Num:
    """SAY NUMBER (Mandarin on a zh channel: Asterisk's say.c plus the shipped digits pack)."""

    value: int


@dataclass(frozen=True)
class Digits:
    """SAY DIGITS for a digit string (order numbers); anything else is spelled (SAY ALPHA)."""

    value: str


@dataclass(frozen=True)
class Alpha:
    """SAY ALPHA: tracking numbers and references with letters; a reward code or an English
    call's courier without a recorded name (``ivr.flows.names``)."""

    value: str


@dataclass(frozen=True)
class Day:
    """A calendar date of the programme, spoken with SAY DATETIME and the language's format."""

    value: date


Piece = str | Num | Digits | Alpha | Day


class Voice:
    """Plays pieces on one channel in the caller's language."""

    def __init__(self, channel: AGIChannel, *, sounds_subdir: str, zone: ZoneInfo,
                 language: str, presence: PromptPresence | None = None) -> None:
        self.channel = channel
        self.subdir = sounds_subdir.strip("/")
        self.zone = zone
        self.language = language
        self.presence = presence

    def has_prompt(self, prompt_id: str) -> bool:
        """Whether the active set has a recording of ``prompt_id`` in the call's language
        (from memory: ``prompts.presence``); False when nobody told the voice."""
        return self.presence is not None and self.presence.has(prompt_id, self.language)

    def prompt_name(self, prompt_id: str) -> str:
        return f"{self.subdir}/{prompt_id}" if self.subdir else prompt_id

    async def set_language(self, language: str) -> None:
        """Switch the channel language: prompts, SAY NUMBER and dates follow it."""
        self.language = language
        await self.channel.set_variable("CHANNEL(language)", language)

    async def play(self, *pieces: Piece, escape: str = MENU_KEYS) -> str | None:
        """Play the pieces in order; the key that interrupted one of them, or None."""
        for piece in pieces:
            try:
                key = await self._one(piece, escape)
            except (AGICommandError, ValueError, TypeError) as refused:
                log.warn("IVR could not say {piece!r}: {error}", piece=piece, error=str(refused),
                         uniqueid=self.channel.uniqueid)
                continue
            if key is not None:
                return key
        return None

    async def _one(self, piece: Piece, escape: str) -> str | None:
        channel = self.channel
        if isinstance(piece, str):
            return await channel.stream_file(self.prompt_name(piece), escape)
        if isinstance(piece, Num):
            return await channel.say_number(piece.value, escape)
        if isinstance(piece, Digits):
            if piece.value.isascii() and piece.value.isdigit():
                return await channel.say_digits(piece.value, escape)
            return await channel.say_alpha(piece.value, escape)
        if isinstance(piece, Alpha):
            return await channel.say_alpha(piece.value, escape) if piece.value else None
        if isinstance(piece, Day):
            epoch, fmt = self.date_args(piece.value)
            return await channel.say_datetime(epoch, escape, fmt, self.zone.key)
        raise TypeError(f"not a speech piece: {piece!r}")

    def date_args(self, day: date) -> tuple[int, str]:
        """(epoch, format) for SAY DATETIME: noon of ``day`` in the programme's zone, so the
        channel's time zone argument lands on the same calendar day."""
        noon = datetime.combine(day, time(12, 0), tzinfo=self.zone)
        return int(noon.timestamp()), date_format(self.language, day)

    async def wait_key(self, timeout_ms: int) -> str | None:
        """One key after a prompt, or None when the caller pressed nothing."""
        return await self.channel.wait_for_digit(timeout_ms)

    async def collect(self, prompt_id: str, max_digits: int, timeout_ms: int) -> GetDataResult:
        """Play a prompt and collect digits ended by ``#``. When the prompt file is missing
        (``result=-1`` and no hang-up yet) the digits are still collected, without it."""
        result = await self.channel.get_data(self.prompt_name(prompt_id), timeout_ms,
                                             max_digits)
        if result.failed and not self.channel.hung_up:
            result = await self.channel.get_data("", timeout_ms, max_digits)
        return result
