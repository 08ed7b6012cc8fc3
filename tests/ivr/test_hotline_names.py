"""Rewards and couriers said by their recorded names over FastAGI (the call simulator as
Asterisk): ``reward_<code>`` in the catalogue and the read-back, ``courier_<code>`` in the
delivery status, and the fallbacks when the active set has no such recording: a reward's code
spelled, a courier spelled in English but never in a Mandarin call (a generic phrase)."""

# ruff: noqa: F811 - pytest fixtures imported from tests.ivr.hotline_kit
from __future__ import annotations

import shutil
from datetime import timedelta

import pytest_twisted
from twisted.internet import reactor

from core.accounts import set_language
from core.redemption import gift_orders
from core.service_desk import update_delivery
from ivr.prompt_watch import PromptSetWatcher
from prompts.presence import PromptPresence, available_ids
from prompts.store import DEFAULT_AUDIO_ROOT
from tests.ivr.hotline_kit import ZH_MEMBER, after, heard, rig  # noqa: F401 - fixtures

REDEEM_A01 = "41T1" + "1234#" + "2"  # redeem, services, (the list heard) item 1, PIN, cancel


def without(lang: str, *prompt_ids: str) -> PromptPresence:
    """The committed set's listing with some recordings taken out of one language."""
    ids = available_ids(DEFAULT_AUDIO_ROOT)
    ids[lang] = ids[lang] - set(prompt_ids)
    return PromptPresence(ids)


def ship(rig, courier: str) -> None:
    order = rig.run(gift_orders, ZH_MEMBER, rig.now, limit=1)[0]
    rig.run(update_delivery, order.order_no, "in_transit", courier, "T123",
            rig.now + timedelta(hours=1))


def delivery_heard(tokens: list[str]) -> list[str]:
    return after(tokens, "dlv_status")[2:after(tokens, "dlv_status").index("sms_offer")]


@pytest_twisted.ensureDeferred
async def test_catalogue_and_read_back_say_the_recorded_reward_name(rig):
    tokens = heard(await rig.call(ZH_MEMBER, REDEEM_A01))
    assert after(tokens, "redeem_item")[:3] == ["redeem_item", "#1", "reward_a01"]
    assert after(tokens, "redeem_confirm_intro")[:2] == ["redeem_confirm_intro", "reward_a01"]
    assert "a:A01" not in tokens


@pytest_twisted.ensureDeferred
async def test_a_reward_without_its_recording_is_spelled(rig):
    rig.service.hotline.prompts = without("zh", "reward_a01")
    tokens = heard(await rig.call(ZH_MEMBER, REDEEM_A01))
    assert after(tokens, "redeem_item")[:3] == ["redeem_item", "#1", "a:A01"]
    assert after(tokens, "redeem_item")[6:9] == ["redeem_item", "#2", "reward_a02"]
    assert after(tokens, "redeem_confirm_intro")[:2] == ["redeem_confirm_intro", "a:A01"]
    assert "reward_a01" not in tokens  # never played a file the set does not have


@pytest_twisted.ensureDeferred
async def test_delivery_status_says_the_courier_by_name(rig):
    ship(rig, "JD")
    tokens = heard(await rig.call(ZH_MEMBER, "5T"))
    assert delivery_heard(tokens) == ["dlv_courier", "courier_jd", "dlv_tracking", "a:T123"]


@pytest_twisted.ensureDeferred
async def test_a_mandarin_call_never_spells_an_unknown_courier(rig):
    ship(rig, "YTO")  # neither configured nor recorded
    tokens = heard(await rig.call(ZH_MEMBER, "5T"))
    assert delivery_heard(tokens) == ["dlv_courier_generic", "dlv_tracking", "a:T123"]
    assert "a:YTO" not in tokens and "dlv_courier" not in tokens


@pytest_twisted.ensureDeferred
async def test_a_mandarin_call_without_the_couriers_recording_says_the_generic_phrase(rig):
    rig.service.hotline.prompts = without("zh", "courier_sf")
    tokens = heard(await rig.call(ZH_MEMBER, "5T"))  # the demo order: shipped by SF Express
    assert delivery_heard(tokens)[:1] == ["dlv_courier_generic"]
    assert not any(t.startswith("a:SF") and t != "a:SF1234567890" for t in tokens)


@pytest_twisted.ensureDeferred
async def test_an_english_call_spells_an_unknown_courier(rig):
    rig.run(set_language, ZH_MEMBER, "en", rig.now)
    ship(rig, "YTO")
    tokens = heard(await rig.call(ZH_MEMBER, "5T", language="en"))
    assert delivery_heard(tokens) == ["dlv_courier", "a:YTO", "dlv_tracking", "a:T123"]


@pytest_twisted.ensureDeferred
async def test_the_listing_follows_a_new_prompt_set(rig, tmp_path):
    """The watcher lists the new set off the reactor; the next call uses the new listing."""
    root = tmp_path / "prompts"
    shutil.copytree(DEFAULT_AUDIO_ROOT, root)
    presence = PromptPresence.scan(root)
    rig.service.hotline.prompts = presence
    watcher = PromptSetWatcher(str(root), interval_s=3600, reactor=reactor, presence=presence)
    await watcher.poll()
    for ext in ("wav", "sln"):
        (root / "zh" / f"reward_a01.{ext}").unlink()
    await watcher.poll()
    assert not presence.has("reward_a01", "zh") and presence.has("reward_a01", "en")
    tokens = heard(await rig.call(ZH_MEMBER, REDEEM_A01))
    assert after(tokens, "redeem_item")[:3] == ["redeem_item", "#1", "a:A01"]


@pytest_twisted.ensureDeferred
async def test_the_simulators_transcript_shows_the_name_played(rig):
    """What ``loyalty simulate call`` prints: the prompt's id, here a reward's name."""
    from harness.call_cli import prompt_text
    from harness.simulator import simulate_call
    from prompts.manifest import load_manifest

    result = await simulate_call("127.0.0.1", rig.port, callerid=ZH_MEMBER, keys=REDEEM_A01,
                                 language="zh", timeout_s=20,
                                 prompt_text=prompt_text(load_manifest(), "loyalty"))
    await rig.settle()
    lines = result.transcript.lines()
    assert "heard: loyalty/reward_a01  «(recorded name)»" in lines
    assert not any(line.startswith("missing prompt") for line in lines)
