"""The pieces every menu of the hotline shares: settings, the call context, retried choices,
the SMS copy offer and the way out to an agent.

Retry rule (``fastagi.max_retries``, default 3): no key or a wrong key is retried with a more
helpful lead each time (first ``err_no_input`` / ``err_invalid_key``, then ``err_help``); one
more failure plays ``err_too_many`` and sends the call to an agent (``ToAgent``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from core.config import Config, CourierConfig, parse_range
from core.messages import Message
from core.metrics import Metrics
from core.numbering import NumberingPlan
from core.rules import ProgrammeRules
from core.service_desk import queue_sms
from ivr.agi_channel import AGIChannel
from ivr.flows.calls import CallInfo
from ivr.flows.lookahead import Pending, Snapshot, menu_snapshot
from ivr.flows.speech import MENU_KEYS, NO_KEYS, SKIP_KEY, Piece, Voice
from ivr.flows.trouble import call_failed
from ops.dbservice import DatabaseService
from prompts.presence import PromptPresence

log = Logger()

SMS_COPY_KIND = "ivr-copy"
LOYALTY_NEXT = "LOYALTY_NEXT"

#: The hotline's main-menu choices (``ivr.flows.hotline``), and its keys: those, * repeat, 0 agent.
MENU_CHOICES = "12345679"
MAIN_MENU_KEYS = MENU_CHOICES + "*0"

#: ``LOYALTY_REASON`` values: why the call goes to a person.
REASON_ASKED = "asked"        # the caller pressed 0
REASON_RETRIES = "retries"    # too many wrong keys or silences
REASON_NO_PIN = "no-pin"      # the member has no service PIN to identify with
REASON_ERROR = "error"        # the system failed during the call


class ToAgent(Exception):
    """Leave the menu for an agent (key 0, or the retry limit); ``reason`` goes to the agent
    in ``LOYALTY_REASON``."""

    def __init__(self, message: str, reason: str = REASON_ASKED) -> None:
        super().__init__(message)
        self.reason = reason


class EndCall(Exception):
    """The flow said goodbye; end the AGI."""


@dataclass(frozen=True)
class Settings:
    digit_timeout_ms: int = 5000
    max_retries: int = 3
    agents_open: tuple[time, time] = (time(8, 0), time(21, 0))
    history_page: int = 3
    sounds_subdir: str = "loyalty"
    zone: ZoneInfo = ZoneInfo("Asia/Shanghai")
    default_language: str = "zh"
    numbering: NumberingPlan = NumberingPlan()  # who may be taken for a member by caller id
    recordings_dir: str = "loyalty/tickets"
    max_recording_s: int = 120
    couriers: tuple[CourierConfig, ...] = ()  # [couriers]: what a delivery's courier stands for

    @classmethod
    def from_config(cls, config: Config) -> Settings:
        f = config.fastagi
        return cls(
            digit_timeout_ms=f.digit_timeout_ms, max_retries=f.max_retries,
            agents_open=parse_range(f.agents_open), history_page=max(1, f.history_page),
            sounds_subdir=config.prompts.sounds_subdir, zone=config.programme.zone,
            default_language=config.programme.default_language,
            numbering=ProgrammeRules.from_config(config).numbering,
            recordings_dir=f.recordings_dir, max_recording_s=max(1, f.max_recording_s),
            couriers=config.couriers)

    def agents_available(self, now: datetime) -> bool:
        local = now.astimezone(self.zone).time()
        start, end = self.agents_open
        if start <= end:
            return start <= local < end
        return local >= start or local < end  # a range across midnight


def channel_language(agi_language: str, default: str) -> str:
    """``zh``, ``zh_CN``, ``zh-TW`` -> zh; ``en``, ``en_GB`` -> en; anything else: default."""
    text = (agi_language or "").lower()
    for lang in ("zh", "en"):
        if text.startswith(lang):
            return lang
    return default


class Call:
    """One hotline call: channel, voice, the member once known, and the shared helpers."""

    def __init__(self, channel: AGIChannel, info: CallInfo, settings: Settings,
                 db: DatabaseService, now: Callable[[], datetime],
                 metrics: Metrics | None = None, prompts: PromptPresence | None = None) -> None:
        self.channel = channel
        self.info = info
        self.settings = settings
        self.db = db
        self.metrics = metrics
        self._now = now
        self.msisdn: str | None = None
        self.redeemed = 0  # redemptions confirmed in this call: numbers the next request id
        self._snapshot: Pending | None = None
        self.voice = Voice(channel, sounds_subdir=settings.sounds_subdir, zone=settings.zone,
                           language=channel_language(channel.language,
                                                     settings.default_language),
                           presence=prompts)

    @property
    def language(self) -> str:
        return self.voice.language

    @property
    def timeout_ms(self) -> int:
        return self.settings.digit_timeout_ms

    def now(self) -> datetime:
        return self._now()

    def run(self, use_case: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred:
        """A core use case on the database thread (never on the reactor)."""
        return self.db.run(use_case, *args, **kwargs)

    # -- the member's data, read ahead -----------------------------------------------------

    def look_ahead(self) -> None:
        """Start reading the main menu's answers now (see ``ivr.flows.lookahead``)."""
        self._snapshot = Pending(self.run(menu_snapshot, self.msisdn, self.now(),
                                          self.settings.history_page + 1, write=False))

    def forget(self) -> None:
        """The call changed the member's data: read again."""
        self._snapshot = None
        self.look_ahead()

    async def snapshot(self) -> Snapshot:
        """The read-ahead answers; read now if none was started or the read-ahead failed."""
        pending = self._snapshot
        if pending is not None:
            try:
                return await pending.get()
            except Exception:
                call_failed(self.info, "the read-ahead (reading again)")
        self._snapshot = None
        return await self.run(menu_snapshot, self.msisdn, self.now(),
                              self.settings.history_page + 1, write=False)

    def local_day(self, instant: datetime):
        return instant.astimezone(self.settings.zone).date()

    # -- choosing ---------------------------------------------------------------------------

    async def ask(self, pieces: Sequence[Piece], *, lead: Sequence[Piece] = (),
                  readout: Sequence[Piece] = ()) -> str | None:
        """Play ``lead`` (barge-in), ``readout`` (only # skips it) and ``pieces`` (barge-in),
        then wait: the key pressed during or after the menu pieces, or None."""
        key = await self.voice.play(*lead, escape=MENU_KEYS) if lead else None
        if key is None:
            if readout:
                await self.voice.play(*readout, escape=SKIP_KEY)
            key = await self.voice.play(*pieces, escape=MENU_KEYS)
        return key if key is not None else await self.voice.wait_key(self.timeout_ms)

    async def choose(self, pieces: Sequence[Piece], valid: str, *,
                     readout: Sequence[Piece] = ()) -> str:
        """A valid key, retrying no input and wrong keys; past the limit raises ``ToAgent``."""
        failures = 0
        lead: tuple[str, ...] = ()
        while True:
            key = await self.ask(pieces, lead=lead, readout=readout)
            if key is not None and key in valid:
                return key
            failures += 1
            if failures > self.settings.max_retries:
                await self.voice.play("err_too_many", escape=NO_KEYS)
                self.info.detail("retry-limit")
                raise ToAgent("retry limit", REASON_RETRIES)
            if failures == 1:
                lead = ("err_no_input" if key is None else "err_invalid_key",)
            else:
                lead = ("err_help",)

    async def input_failed(self, failures: int, timed_out: bool, wrong_prompt: str) -> str:
        """After a failed free-form input (number, PIN): the lead prompt for the next try, or
        ``err_too_many`` and ``ToAgent`` past the retry limit."""
        if failures > self.settings.max_retries:
            await self.voice.play("err_too_many", escape=NO_KEYS)
            self.info.detail("retry-limit")
            raise ToAgent("retry limit", REASON_RETRIES)
        if failures > 1:
            return "err_help"
        return "err_no_input" if timed_out else wrong_prompt

    # -- SMS copies -------------------------------------------------------------------------

    async def queue_sms(self, message: Message, *, kind: str,
                        dedupe_key: str | None = None) -> None:
        await self.run(queue_sms, self.msisdn, self.now(), kind=kind, template=message.template,
                       params=message.params, language=self.language, dedupe_key=dedupe_key)

    async def offer_sms(self, message: Message) -> str | None:
        """After an answer: 1 queues an SMS copy. Any other key is handed back to be used as
        the next main-menu choice; no key returns None (back to the main menu)."""
        key = await self.ask(["sms_offer"])
        if key != "1":
            return key
        self.info.detail("sms")
        try:
            await self.queue_sms(message, kind=SMS_COPY_KIND)
        except Exception:
            call_failed(self.info, "queueing an SMS copy")
            await self.voice.play("err_system", escape=NO_KEYS)
            return None
        await self.voice.play("sms_sent", escape=NO_KEYS)
        return None

    # -- the way out ------------------------------------------------------------------------

    def last_menu(self) -> str:
        """Where the caller was before asking for a person, for the agent: the last main-menu
        choice other than 0 (``1``-``5``, ``7``, ``9``), ``id`` while identifying, else ``main``."""
        steps = [step.split(":")[0] for step in self.info.path
                 if step != "id:pin-ok"]  # identified: past that menu
        menus = [s for s in steps if s == "id" or (len(s) == 1 and s in MENU_CHOICES)]
        return menus[-1] if menus else "main"

    async def to_agent(self, reason: str = REASON_ASKED) -> None:
        """Tell the dialplan to queue the call for an agent (with the tier, so priority tiers
        reach the VIP queue, and the context the agent sees: the member's verified number,
        why and from which menu), or say goodbye when agents are closed. Then the AGI ends."""
        if not self.settings.agents_available(self.now()):
            self.info.outcome = "closed"
            await self.channel.set_variable(LOYALTY_NEXT, "closed")
            await self.voice.play("agent_closed", "goodbye", escape=NO_KEYS)
            return
        code, priority = "", False
        if self.msisdn is not None:
            try:
                status = (await self.snapshot()).tier
                code, priority = status.code, status.priority
            except Exception:
                call_failed(self.info, "reading the tier for the agent queue")
        self.info.outcome = "agent"
        await self.channel.set_variable(LOYALTY_NEXT, "agent")
        await self.channel.set_variable("LOYALTY_TIER", code)
        await self.channel.set_variable("LOYALTY_PRIORITY", "1" if priority else "0")
        await self.channel.set_variable("LOYALTY_MSISDN", self.msisdn or "")
        await self.channel.set_variable("LOYALTY_REASON", reason)
        await self.channel.set_variable("LOYALTY_LAST_MENU", self.last_menu())
        await self.voice.play("agent_transfer", escape=NO_KEYS)
