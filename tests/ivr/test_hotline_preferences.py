"""Main-menu 7 over FastAGI with the call simulator: warnings on/off, by SMS or voice call,
the language, and the monthly automatic redemption chosen from the catalogue."""

# ruff: noqa: F811 - pytest fixtures imported from tests.ivr.hotline_kit
from __future__ import annotations

import pytest_twisted

from core.preferences import preferences
from tests.ivr.hotline_kit import ZH_MEMBER, after, heard, rig  # noqa: F401 - fixtures


@pytest_twisted.ensureDeferred
async def test_warnings_off_then_by_voice_call(rig):
    result = await rig.call(ZH_MEMBER, "72131*T")
    tokens = heard(result)
    assert after(tokens, "prefs_menu")[:8] == [
        "prefs_menu", "k:2", "prefs_warnings_on", "prefs_turn_off", "k:1", "prefs_saved",
        "prefs_menu", "k:3"]
    assert after(tokens, "k:3")[:5] == ["k:3", "prefs_by_sms", "prefs_to_voice", "k:1",
                                        "prefs_saved"]
    assert after(tokens, "k:*")[:2] == ["k:*", "menu_main"]
    prefs = rig.run(preferences, ZH_MEMBER, rig.now)
    assert (prefs.warnings_on, prefs.warning_channel) == (False, "voice")
    assert rig.call_records()[-1]["menu_path"].startswith("7:warnings-off:by-voice")
    # Back on: the menu says what is set now.
    tokens = heard(await rig.call(ZH_MEMBER, "721*T"))
    assert after(tokens, "k:2")[:3] == ["k:2", "prefs_warnings_off", "prefs_turn_on"]
    assert rig.run(preferences, ZH_MEMBER, rig.now).warnings_on


@pytest_twisted.ensureDeferred
async def test_star_leaves_a_choice_unchanged(rig):
    await rig.call(ZH_MEMBER, "73**T")
    assert rig.run(preferences, ZH_MEMBER, rig.now).warning_channel == "sms"


@pytest_twisted.ensureDeferred
async def test_language_from_the_preferences(rig):
    tokens = heard(await rig.call(ZH_MEMBER, "71*T"))
    assert after(tokens, "k:1")[:3] == ["k:1", "set:CHANNEL(language)=en", "lang_switched"]
    assert rig.run(preferences, ZH_MEMBER, rig.now).language == "en"


@pytest_twisted.ensureDeferred
async def test_monthly_automatic_redemption_chosen_from_the_catalogue_and_stopped(rig):
    result = await rig.call(ZH_MEMBER, "741111234#*T")
    tokens = heard(result)
    assert after(tokens, "k:4")[:4] == ["k:4", "prefs_auto_none", "prefs_auto_start", "k:1"]
    # the categories and items as the redeem menu speaks them, then the PIN
    assert after(tokens, "redeem_categories")[:5] == ["redeem_categories", "k:1", "redeem_item",
                                                      "k:1", "redeem_enter_pin"]
    assert after(tokens, "prefs_auto_set")[:2] == ["prefs_auto_set", "reward_a01"]
    assert rig.run(preferences, ZH_MEMBER, rig.now).auto_reward_code == "A01"
    tokens = heard(await rig.call(ZH_MEMBER, "742*T"))
    assert after(tokens, "k:4")[:5] == ["k:4", "prefs_auto_is", "reward_a01", "prefs_auto_change",
                                        "k:2"]
    assert "prefs_auto_stopped" in tokens
    assert rig.run(preferences, ZH_MEMBER, rig.now).auto_reward_code is None
