"""Who is calling: the caller id when it is a member's number, else the number and service PIN
keyed in; and the PIN check that guards a redemption.

Wrong PINs count toward the core's lock (``programme.pin_max_tries``); a locked PIN is told and
never retried. No input / an unusable number is retried like a menu (``Call.input_failed``).
"""

from __future__ import annotations

from core.accounts import get_member, verify_pin
from core.domain import InvalidMsisdn, Member, PinNotSet
from ivr.flows.menu import REASON_NO_PIN, Call, EndCall, ToAgent
from ivr.flows.speech import NO_KEYS

NUMBER_DIGITS = 15
PIN_DIGITS = 8
LANGUAGES = ("zh", "en")  # the languages the prompts come in


def caller_number(call: Call) -> str | None:
    """The caller's normalised number, or None when withheld, unknown or not a phone number.

    ``agi_arg_1``, when the dialplan passes one, is the member's number known to the dialplan
    itself (the outbound expiry-warning call continues to the hotline with
    ``AGI(agi://host:4573/loyalty,${LOYALTY_MSISDN})``: its caller id is the short code);
    inbound calls pass no argument and are known by caller id."""
    args = call.channel.args
    raw = args[0] if args and args[0] else call.channel.callerid
    if raw is None:
        return None
    try:
        return call.settings.numbering.normalise(raw)
    except InvalidMsisdn:
        return None


async def find_member(call: Call, number: str) -> Member | None:
    try:
        return await call.run(get_member, number, write=False)
    except InvalidMsisdn:
        return None


async def by_caller_id(call: Call) -> Member | None:
    """The member whose number the caller id is, if any."""
    number = caller_number(call)
    return await find_member(call, number) if number is not None else None


async def authenticate(call: Call) -> Member:
    """A caller not known by caller id keys in the number, then the service PIN (each ended
    by #). A locked PIN ends the call politely (``EndCall``)."""
    call.info.step("id")
    member = await _keyed_member(call)
    call.msisdn = member.msisdn
    if member.language in LANGUAGES and member.language != call.language:
        # The member is known now: the PIN prompt and the rest in the member's language.
        await call.voice.set_language(member.language)
    try:
        pin_ok = await enter_pin(call, "auth_enter_pin")
    except ToAgent:
        call.msisdn = None  # not proven: the agent queue must not trust the keyed number
        raise
    if not pin_ok:
        await call.voice.play("goodbye", escape=NO_KEYS)
        call.info.outcome = "pin-locked"
        raise EndCall("PIN locked")
    call.info.detail("pin-ok")
    return member


async def _keyed_member(call: Call) -> Member:
    failures = 0
    lead: str | None = None
    while True:
        if lead is not None:
            await call.voice.play(lead, escape=NO_KEYS)
        result = await call.voice.collect("auth_enter_number", NUMBER_DIGITS, call.timeout_ms)
        digits = result.digits.replace("*", "")
        member = await find_member(call, digits) if digits else None
        if member is not None:
            return member
        failures += 1
        lead = await call.input_failed(failures, not digits, "auth_not_member")


async def enter_pin(call: Call, prompt: str) -> bool:
    """Ask for the service PIN of ``call.msisdn`` until it is right (True) or locked (False).

    A member without a PIN is told so and sent to an agent (``ToAgent``)."""
    failures = 0
    ask = prompt
    while True:
        result = await call.voice.collect(ask, PIN_DIGITS, call.timeout_ms)
        if not result.digits:
            failures += 1
            lead = await call.input_failed(failures, True, "err_no_input")
            await call.voice.play(lead, escape=NO_KEYS)
            ask = prompt
            continue
        try:
            check = await call.run(verify_pin, call.msisdn, result.digits, call.now())
        except PinNotSet:
            await call.voice.play("auth_pin_not_set", escape=NO_KEYS)
            raise ToAgent("no PIN", REASON_NO_PIN) from None
        if check.accepted:
            return True
        if check.locked_until is not None:
            await call.voice.play("auth_pin_locked", escape=NO_KEYS)
            return False
        ask = "auth_wrong_pin"
