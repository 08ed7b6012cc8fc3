"""Member care on the hotline: type-ahead during the welcome, the language of a caller who keys
in an English member's number, and the context an agent gets with a transferred call."""

# ruff: noqa: F811 - pytest fixtures imported from tests.ivr.hotline_kit
from __future__ import annotations

import pytest
import pytest_twisted

from tests.ivr.hotline_kit import (  # noqa: F401 - fixtures
    EN_MEMBER,
    MANIFEST,
    ZH_MEMBER,
    after,
    heard,
    rig,
)


def loyalty_vars(result) -> dict[str, str]:
    return {k: v for k, v in result.variables_set.items() if k.startswith("LOYALTY")}


def spoken_in(result, prompt_id: str) -> str:
    for event in result.transcript:
        if event.kind == "prompt" and event.value == f"loyalty/{prompt_id}":
            return event.detail
    raise AssertionError(f"{prompt_id} not played")


@pytest_twisted.ensureDeferred
async def test_2_pressed_during_the_welcome_gives_the_balance_at_once(rig):
    result = await rig.call(ZH_MEMBER, "2")
    tokens = heard(result)
    assert after(tokens, "welcome")[:3] == ["welcome", "k:2", "bal_is"]
    assert "menu_main" not in tokens[: tokens.index("bal_is")]


@pytest.mark.parametrize("callerid", [None, "10086"])
@pytest_twisted.ensureDeferred
async def test_a_withheld_caller_keying_in_an_english_member_hears_english_from_the_pin_on(
        rig, callerid):
    result = await rig.call(callerid, "15800158000#1234#2T", language="zh")
    tokens = heard(result)
    assert after(tokens, "k:15800158000#")[:3] == ["k:15800158000#", "set:CHANNEL(language)=en",
                                                   "auth_enter_pin"]
    assert spoken_in(result, "auth_enter_pin") == MANIFEST.text("auth_enter_pin", "en")
    assert spoken_in(result, "bal_is") == MANIFEST.text("bal_is", "en")


@pytest_twisted.ensureDeferred
async def test_key_0_hands_the_agent_the_member_the_reason_and_the_last_menu(rig):
    result = await rig.call(ZH_MEMBER, "2T0")
    assert loyalty_vars(result) == {
        "LOYALTY_NEXT": "agent", "LOYALTY_TIER": "gold", "LOYALTY_PRIORITY": "1",
        "LOYALTY_MSISDN": ZH_MEMBER, "LOYALTY_REASON": "asked", "LOYALTY_LAST_MENU": "2"}


@pytest_twisted.ensureDeferred
async def test_a_caller_who_keyed_in_the_number_reaches_the_agent_with_it(rig):
    result = await rig.call(None, "15800158000#1234#0")
    got = loyalty_vars(result)
    assert got["LOYALTY_MSISDN"] == EN_MEMBER
    assert got["LOYALTY_REASON"] == "asked" and got["LOYALTY_LAST_MENU"] == "main"


@pytest_twisted.ensureDeferred
async def test_retries_at_the_main_menu_are_the_reason(rig):
    result = await rig.call(ZH_MEMBER, "TTTT")
    got = loyalty_vars(result)
    assert got["LOYALTY_REASON"] == "retries" and got["LOYALTY_LAST_MENU"] == "main"
    assert got["LOYALTY_MSISDN"] == ZH_MEMBER


@pytest_twisted.ensureDeferred
async def test_an_unproven_caller_reaches_the_agent_without_a_number(rig):
    result = await rig.call(None, "TTTT")
    got = loyalty_vars(result)
    assert got["LOYALTY_MSISDN"] == "" and got["LOYALTY_REASON"] == "retries"
    assert got["LOYALTY_LAST_MENU"] == "id"
