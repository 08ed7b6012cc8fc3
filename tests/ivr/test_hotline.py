"""The hotline's menus end to end over TCP (simulator <-> FastAGI service <-> core <-> database),
in both languages: what the caller heard, in order, and what was stored."""

# ruff: noqa: F811 - pytest fixtures imported from tests.ivr.hotline_kit
from __future__ import annotations

import json

import pytest
import pytest_twisted

from core.accounts import balance, tier_status
from core.redemption import gift_orders
from tests.ivr.hotline_kit import (  # noqa: F401 - fixtures
    DIAMOND,
    EN_MEMBER,
    MANIFEST,
    SHANGHAI,
    ZH_MEMBER,
    after,
    heard,
    rig,
)

BOTH = pytest.mark.parametrize("msisdn,lang", [(ZH_MEMBER, "zh"), (EN_MEMBER, "en")])


def spoken_in(result, prompt_id: str) -> str:
    """The words the caller heard for the first play of ``prompt_id``."""
    for event in result.transcript:
        if event.kind == "prompt" and event.value == f"loyalty/{prompt_id}":
            return event.detail
    raise AssertionError(f"{prompt_id} not played")


def date_formats(result) -> list[str]:
    return [c for c in result.commands if c.startswith("SAY DATETIME")]


@BOTH
@pytest_twisted.ensureDeferred
async def test_welcome_and_main_menu_in_the_members_language(rig, msisdn, lang):
    result = await rig.call(msisdn, "*", language="zh")
    tokens = heard(result)
    assert tokens[:4] == ["answer", f"set:CHANNEL(language)={lang}", "welcome", "menu_main"]
    assert spoken_in(result, "menu_main") == MANIFEST.text("menu_main", lang)
    # * repeats the menu without any error prompt
    assert tokens[4:8] == ["k:*", "menu_main", "menu_prefs", "timeout"]


@BOTH
@pytest_twisted.ensureDeferred
async def test_1_tier(rig, msisdn, lang):
    status = rig.run(tier_status, msisdn, rig.now)
    result = await rig.call(msisdn, "1T", language=lang)
    expected = ["tier_is", f"tier_{status.code}", "tier_valid_until",
                f"date:{status.valid_until.isoformat()}"]
    if status.next_code:
        expected += ["tier_need", f"#{status.points_to_next}", "tier_to_reach",
                     f"tier_{status.next_code}"]
    else:
        expected += ["tier_top"]
    assert after(heard(result), "tier_is")[: len(expected) + 2] == expected + [
        "sms_offer", "timeout"]
    assert spoken_in(result, "tier_is") == MANIFEST.text("tier_is", lang)
    fmt = date_formats(result)[0]
    if lang == "zh":  # year digit by digit, then say.c's month and day
        assert "'digits/2' 'digits/0' 'digits/2' 'digits/7' 'digits/year' Bd" in fmt
    else:
        assert '"BdY" "Asia/Shanghai"' in fmt


@pytest_twisted.ensureDeferred
async def test_1_tier_at_the_top(rig):
    result = await rig.call(DIAMOND, "1T")
    assert after(heard(result), "tier_is")[:5] == [
        "tier_is", "tier_diamond", "tier_valid_until", "date:2027-11-30", "tier_top"]


@BOTH
@pytest_twisted.ensureDeferred
async def test_2_balance_and_what_expires(rig, msisdn, lang):
    bal = rig.run(balance, msisdn, rig.now)
    result = await rig.call(msisdn, "2T", language=lang)
    expected = ["bal_is", f"#{bal.points}", "unit_points"]
    if bal.next_expiry_points:
        expected += ["bal_of_which", f"#{bal.next_expiry_points}", "unit_points",
                     "bal_expire_on", f"date:{bal.next_expiry_date.isoformat()}"]
    else:
        expected += ["bal_none_expiring"]
    assert after(heard(result), "bal_is")[: len(expected) + 1] == expected + ["sms_offer"]
    assert spoken_in(result, "bal_is") == MANIFEST.text("bal_is", lang)


@pytest_twisted.ensureDeferred
async def test_2_balance_of_the_zh_demo_member_expires_on_31_december(rig):
    result = await rig.call(ZH_MEMBER, "2T")
    assert after(heard(result), "bal_is")[:8] == [
        "bal_is", "#9300", "unit_points", "bal_of_which", "#800", "unit_points",
        "bal_expire_on", "date:2026-12-31"]


def said(entry) -> list[str]:
    """What one history entry sounds like: date, kind, amount, unit."""
    day = entry.created_at.astimezone(SHANGHAI).date().isoformat()
    return [f"date:{day}", f"hist_kind_{entry.kind}", f"#{abs(entry.amount)}", "unit_points"]


@BOTH
@pytest_twisted.ensureDeferred
async def test_3_history_first_page_newest_first(rig, msisdn, lang):
    entries = rig.ledger(msisdn)
    result = await rig.call(msisdn, "3TT", language=lang)
    tokens = after(heard(result), "hist_latest")
    first = [t for e in entries[:3] for t in said(e)]
    assert tokens[1: 1 + len(first)] == first
    follow = "hist_more" if len(entries) > 3 else "hist_no_more"
    assert tokens[1 + len(first)] == follow
    assert spoken_in(result, "hist_latest") == MANIFEST.text("hist_latest", lang)


@pytest_twisted.ensureDeferred
async def test_3_history_1_more_and_star_repeat(rig):
    entries = rig.ledger(ZH_MEMBER)
    assert len(entries) == 5  # demo: 3 credits, a penalty, a gift redemption
    result = await rig.call(ZH_MEMBER, "3*1T")
    tokens = after(heard(result), "hist_latest")
    page1 = [t for e in entries[:3] for t in said(e)]
    page2 = [t for e in entries[3:] for t in said(e)]
    expected = [*page1, "hist_more", "k:*", *page1, "hist_more", "k:1", *page2,
                "hist_no_more", "sms_offer", "timeout", "menu_main"]
    assert tokens[1: 1 + len(expected)] == expected
    assert [e.kind for e in entries[:2]] == ["debit", "penalty"]


@pytest_twisted.ensureDeferred
async def test_3_history_when_there_is_none(rig):
    with rig.store.unit_of_work() as uow:
        uow.members.upsert_members([dict(msisdn="13300133000", name="New", language="zh",
                                         tier_code="standard", warning_opt_out=False,
                                         warning_channel="sms", pin_failures=0,
                                         created_at=rig.now)])
    result = await rig.call("13300133000", "3T5T")
    tokens = heard(result)
    assert after(tokens, "hist_none")[:2] == ["hist_none", "menu_main"]
    assert after(tokens, "dlv_none")[:2] == ["dlv_none", "menu_main"]


@BOTH
@pytest_twisted.ensureDeferred
async def test_5_gift_delivery(rig, msisdn, lang):
    orders = rig.run(gift_orders, msisdn, rig.now, limit=3)
    result = await rig.call(msisdn, "5T", language=lang)
    tokens = heard(result)
    if not orders:
        assert after(tokens, "dlv_none")[:2] == ["dlv_none", "menu_main"]
        return
    o = orders[0]
    assert after(tokens, "dlv_latest")[:10] == [
        "dlv_latest", "dlv_order", f"d:{o.order_no}", "dlv_status",
        f"dlv_status_{o.delivery.status}", "dlv_courier", "courier_sf",  # demo: SF Express
        "dlv_tracking", f"a:{o.delivery.tracking_no}", "sms_offer"]


@pytest_twisted.ensureDeferred
async def test_5_several_gift_orders_one_at_a_time(rig):
    from core.domain import Channel
    from core.redemption import redeem

    second = rig.run(redeem, DIAMOND, "G01", Channel.SMS, "t-1", rig.now)
    third = rig.run(redeem, DIAMOND, "G02", Channel.SMS, "t-2", rig.now)
    result = await rig.call(DIAMOND, "5*1T")
    tokens = heard(result)
    orders = [t for t in tokens if t.startswith("d:")]
    # newest first; * repeats the first, 1 goes to the next
    assert orders == [f"d:{third.order_no}", f"d:{third.order_no}", f"d:{second.order_no}"]
    assert "dlv_status_pending" in tokens
    assert tokens.count("dlv_next") == 2


@pytest.mark.parametrize("keys,template", [("11", "tier"), ("21", "balance"),
                                           ("3T1", "history"), ("51", "delivery")])
@pytest_twisted.ensureDeferred
async def test_every_answer_offers_an_sms_copy(rig, keys, template):
    result = await rig.call(ZH_MEMBER, keys)
    tokens = heard(result)
    assert after(tokens, "sms_offer")[:4] == ["sms_offer", "k:1", "sms_sent", "menu_main"]
    queued = [m for m in rig.outbox(ZH_MEMBER) if m["template"] == template]
    assert len(queued) == 1
    message = queued[0]
    assert message["kind"] == "ivr-copy" and message["language"] == "zh"
    params = json.loads(message["params"])
    if template == "balance":
        assert params == {"points": 9300, "expiring_points": 800, "expiry_date": "2026-12-31"}
    elif template == "tier":
        assert params["tier_code"] == "gold" and params["tier_name"] == "金卡会员"
        assert params["points_to_next"] == 7000 and params["next_tier_code"] == "diamond"
        assert params["valid_until"] == "2027-11-30"
    elif template == "history":
        assert len(params["entries"]) == 3
        assert params["entries"][0]["kind"] == "debit" and params["entries"][0]["amount"] == -3000
    else:
        assert params["orders"][0]["tracking_no"] == "SF1234567890"
        assert params["orders"][0]["status"] == "shipped"
        assert params["orders"][0]["courier"] == "顺丰速运"  # stored as "SF Express"


@pytest_twisted.ensureDeferred
async def test_a_key_instead_of_the_sms_offer_is_the_next_menu_choice(rig):
    result = await rig.call(ZH_MEMBER, "22T")
    tokens = heard(result)
    # balance, then 2 pressed at the SMS offer: the balance again, no menu in between
    assert tokens.count("bal_is") == 2
    second = tokens.index("bal_is", tokens.index("bal_is") + 1)
    assert tokens[second - 2: second] == ["sms_offer", "k:2"]
    assert rig.outbox(ZH_MEMBER) == []


@pytest_twisted.ensureDeferred
async def test_9_switches_language_and_stores_the_preference(rig):
    from core.accounts import get_member

    result = await rig.call(ZH_MEMBER, "92T", language="zh")
    tokens = heard(result)
    assert after(tokens, "k:9")[:4] == ["k:9", "set:CHANNEL(language)=en", "lang_switched",
                                        "menu_main"]
    assert spoken_in(result, "lang_switched") == MANIFEST.text("lang_switched", "en")
    assert rig.run(get_member, ZH_MEMBER).language == "en"
    # the next call starts in English even on a zh channel
    result = await rig.call(ZH_MEMBER, "", language="zh")
    assert heard(result)[1] == "set:CHANNEL(language)=en"
    assert spoken_in(result, "welcome") == MANIFEST.text("welcome", "en")
