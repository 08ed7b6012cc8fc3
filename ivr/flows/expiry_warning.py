"""The ``expiry-warning`` FastAGI script: the outbound voice warning call.

The voice dispatcher (``ivr.voice_warnings``) has Asterisk call the member through AMI with the
channel variables ``LOYALTY_MSISDN`` and ``LOYALTY_WARNING_ID``; once answered, the call runs
this flow. It says, in the member's language, how many points expire on which date (only ``#``
skips that read-out), then offers 1 for the hotline menu (sets ``LOYALTY_NEXT=hotline`` and ends
the AGI: the dialplan continues to the hotline script) and 2 for an SMS copy of the warning (once
per warning, held to the end of the quiet hours like every job message). No key or a wrong key
is asked again (``fastagi.max_retries`` tries in all), then goodbye. Prompt ids: see
``PROMPT_IDS``.

The call is originated into the dialplan (``ami.context``/``exten``/``priority``, the sample
``loyalty-warning`` context in ``config/extensions.conf``), which runs this script and then::

    same => n,GotoIf($["${LOYALTY_NEXT}" = "hotline"]?hotline)
    same => n,Hangup()
    same => n(hotline),AGI(agi://host:4573/loyalty,${LOYALTY_MSISDN})
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from core.clock import SecondsClock, utc_now_from
from core.config import Config, JobsConfig
from core.domain import mask_msisdn
from core.jobs.expiry_warnings import send_warning_copy, warning_for_call
from ivr.agi_channel import AGIChannel
from ivr.flows.calls import CallBook, CallInfo
from ivr.flows.speech import NO_KEYS, SKIP_KEY, Day, Num, Voice
from ops.dbservice import DatabaseService

log = Logger()

SCRIPT = "expiry-warning"
#: Every prompt id this flow plays (``ivr.prompt_ids`` / ``loyalty prompts check`` read it).
PROMPT_IDS: frozenset[str] = frozenset({
    "warn_intro", "warn_you_have", "unit_points", "warn_expire_on", "warn_options", "sms_sent",
    "goodbye", "err_no_input", "err_invalid_key", "err_system",
})
LOYALTY_NEXT = "LOYALTY_NEXT"
CHOICES = "12"


async def expiry_warning_flow(channel: AGIChannel, db: DatabaseService, *,
                              jobs: JobsConfig | None = None,
                              sounds_subdir: str = "loyalty", digit_timeout_ms: int = 5000,
                              max_tries: int = 3, clock: SecondsClock,
                              book: CallBook | None = None) -> str:
    """Run one warning call. Returns how it ended: ``hotline``, ``sms``, ``no-choice``,
    ``unknown-warning`` or ``error`` (also the call record's outcome when ``book`` is the
    call recorder's)."""
    info = book.get(channel) if book is not None else None
    result = await _warning_call(channel, db, info, jobs=jobs, sounds_subdir=sounds_subdir,
                                 digit_timeout_ms=digit_timeout_ms, max_tries=max_tries,
                                 clock=clock)
    if info is not None:
        info.outcome = result
    return result


async def _warning_call(channel: AGIChannel, db: DatabaseService, info: CallInfo | None, *,
                        jobs: JobsConfig | None, sounds_subdir: str, digit_timeout_ms: int,
                        max_tries: int, clock: SecondsClock) -> str:
    now = utc_now_from(clock)

    rules = db.rules
    voice = Voice(channel, sounds_subdir=sounds_subdir, zone=rules.zone,
                  language=rules.programme.default_language)
    msisdn = await channel.get_variable("LOYALTY_MSISDN")
    warning_id = await channel.get_variable("LOYALTY_WARNING_ID")
    fields = dict(uniqueid=channel.uniqueid, msisdn=mask_msisdn(msisdn), warning_id=warning_id)
    if info is not None and msisdn:
        # The record names the member called; this leg's caller id is our own short code.
        info.msisdn = msisdn
    warning = None
    if msisdn and warning_id and warning_id.isdigit():
        try:
            warning = await db.run(warning_for_call, int(warning_id), msisdn, now(), write=False)
        except Exception:
            log.failure("expiry-warning call: could not read warning {warning_id}", **fields)
    if warning is None:
        log.warn("expiry-warning call for an unknown warning {warning_id} ({msisdn})", **fields)
        await voice.play("err_system", escape=NO_KEYS)
        await channel.hangup()
        return "unknown-warning"

    await voice.set_language(warning.language)
    # The read-out is not cut short by a key meant for the options (only # skips it).
    await voice.play("warn_intro", "warn_you_have", Num(warning.points), "unit_points",
                     "warn_expire_on", Day(warning.last_day), escape=SKIP_KEY)
    failures = 0
    while True:
        result = await voice.collect("warn_options", 1, digit_timeout_ms)
        key = result.digits or None
        if key is not None and key in CHOICES:
            break
        failures += 1
        if failures >= max_tries:
            await voice.play("goodbye", escape=NO_KEYS)
            await channel.hangup()
            return "no-choice"
        await voice.play("err_no_input" if key is None else "err_invalid_key", escape=NO_KEYS)

    if key == "1":
        log.info("expiry-warning call {warning_id}: to the hotline menu", **fields)
        await channel.set_variable(LOYALTY_NEXT, "hotline")
        return "hotline"
    try:
        await db.run(send_warning_copy, warning.warning_id, warning.msisdn, now(),
                     jobs or JobsConfig())
    except Exception:
        log.failure("expiry-warning call {warning_id}: could not queue the SMS copy", **fields)
        await voice.play("err_system", escape=NO_KEYS)
        await channel.hangup()
        return "error"
    log.info("expiry-warning call {warning_id}: SMS copy queued", **fields)
    await voice.play("sms_sent", "goodbye", escape=NO_KEYS)
    await channel.hangup()
    return "sms"


def make_expiry_warning_flow(config: Config, db: DatabaseService, *,
                             book: CallBook | None = None, metrics: object = None,
                             clock: SecondsClock) -> Callable[[AGIChannel], Any]:
    """The flow of the ``expiry-warning`` script (``ivr.server.SCRIPTS``); ``book`` is the call
    recorder's (the flow names the member and the outcome in it); ``metrics`` is not needed."""

    def flow(channel: AGIChannel):
        return expiry_warning_flow(channel, db, jobs=config.jobs,
                                   sounds_subdir=config.prompts.sounds_subdir,
                                   digit_timeout_ms=config.fastagi.digit_timeout_ms,
                                   max_tries=config.fastagi.max_retries, clock=clock,
                                   book=book)

    return flow
