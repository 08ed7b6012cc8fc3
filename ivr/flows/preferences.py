"""Main-menu 7: the member's preferences.

1 language (the other one, stored) - 2 expiry warnings on/off - 3 warnings by SMS or by a voice
call - 4 monthly automatic redemption - * back - 0 agent. Each choice first says what is set
now, then offers the change (1) or back (*). The automatic redemption's reward is chosen from
the catalogue's categories and items, spoken as the redeem menu speaks them, and confirmed with
the service PIN (it spends points every month); 2 stops it.
"""

from __future__ import annotations

from core.preferences import Preferences, preferences, set_preferences
from ivr.flows.auth import enter_pin
from ivr.flows.menu import Call, ToAgent
from ivr.flows.names import reward_name
from ivr.flows.redeem import choose_reward
from ivr.flows.speech import SKIP_KEY, Piece

PROMPT_IDS: frozenset[str] = frozenset({
    "prefs_menu", "prefs_saved",
    "prefs_warnings_on", "prefs_warnings_off", "prefs_turn_off", "prefs_turn_on",
    "prefs_by_sms", "prefs_by_voice", "prefs_to_voice", "prefs_to_sms",
    "prefs_auto_none", "prefs_auto_is", "prefs_auto_start", "prefs_auto_change",
    "prefs_auto_set", "prefs_auto_stopped",
})
OTHER_LANGUAGE = {"zh": "en", "en": "zh"}


async def preferences_menu(call: Call) -> None:
    """The preferences until the caller goes back (*)."""
    while True:
        key = await call.choose(["prefs_menu"], "1234*0")
        if key == "*":
            return
        if key == "0":
            raise ToAgent("key 0")
        if key == "1":
            language = OTHER_LANGUAGE.get(call.language, "zh")
            await call.run(set_preferences, call.msisdn, call.now(), language=language)
            await call.voice.set_language(language)
            call.info.detail(f"lang-{language}")
            await call.voice.play("lang_switched", escape=SKIP_KEY)
            continue
        prefs: Preferences = await call.run(preferences, call.msisdn, call.now(), write=False)
        if key == "2":
            on = prefs.warnings_on
            await _change(call, "prefs_warnings_on" if on else "prefs_warnings_off",
                          "prefs_turn_off" if on else "prefs_turn_on",
                          f"warnings-{'off' if on else 'on'}", warnings=not on)
        elif key == "3":
            voice = prefs.warning_channel == "voice"
            await _change(call, "prefs_by_voice" if voice else "prefs_by_sms",
                          "prefs_to_sms" if voice else "prefs_to_voice",
                          "by-sms" if voice else "by-voice",
                          warning_channel="sms" if voice else "voice")
        else:
            await _auto_redemption(call, prefs)


async def _change(call: Call, now_set: str, offer: str, detail: str, **change: object) -> None:
    key = await call.choose([offer], "1*0", readout=[now_set])
    if key == "0":
        raise ToAgent("key 0")
    if key == "*":
        return
    await call.run(set_preferences, call.msisdn, call.now(), **change)
    call.info.detail(detail)
    await call.voice.play("prefs_saved", escape=SKIP_KEY)


async def _auto_redemption(call: Call, prefs: Preferences) -> None:
    code = prefs.auto_reward_code
    readout: list[Piece] = (["prefs_auto_is", reward_name(call.voice, code)] if code
                            else ["prefs_auto_none"])
    key = await call.choose(["prefs_auto_change" if code else "prefs_auto_start"],
                            "12*0" if code else "1*0", readout=readout)
    if key == "0":
        raise ToAgent("key 0")
    if key == "*":
        return
    if key == "2":
        await call.run(set_preferences, call.msisdn, call.now(), auto_redeem="off")
        call.info.detail("auto-off")
        await call.voice.play("prefs_auto_stopped", escape=SKIP_KEY)
        return
    item = await choose_reward(call, in_stock_only=False)
    if item is None:
        return
    if not await enter_pin(call, "redeem_enter_pin"):
        return  # PIN locked (told)
    await call.run(set_preferences, call.msisdn, call.now(), auto_redeem=item.reward.code)
    call.info.detail(f"auto-{item.reward.code}")
    await call.voice.play("prefs_auto_set", reward_name(call.voice, item.reward.code),
                          escape=SKIP_KEY)
