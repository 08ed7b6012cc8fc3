"""Every message the programme builds renders with its template in both languages.

The templates are rendered with StrictUndefined: a parameter a template uses that the message
does not give fails the render, so a builder and its template cannot drift apart again.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from core import messages
from core.config import CourierConfig, TierConfig
from core.domain import (
    Balance,
    Delivery,
    LedgerEntry,
    Order,
    PricedReward,
    Quote,
    Reward,
    Ticket,
    TierStatus,
)
from sms.render import LANGUAGES, TEMPLATES, render, template_names

NOW = datetime(2026, 11, 20, 8, 30, tzinfo=UTC)
CUP = Reward("A01", "保温杯", "Thermos cup", "gift", 3000, None, None, None, None, 1)
DATA = Reward("B02", "1GB流量", "1GB data", "voucher", 500, None, None, None, None, 2)
GOLD = TierStatus("13800138000", "gold", "金卡", "Gold", date(2027, 12, 31), 9000, True,
                  "platinum", "白金卡", "Platinum", 1000)
TOP = TierStatus("13800138000", "platinum", "白金卡", "Platinum", None, 20000, True, None, None,
                 None, 0)
SHIPPED = Delivery("R1", "shipped", "SF", "SF123", NOW)
ORDER = Order("R1", "13800138000", "A01", "gift", 3000, "done", "sms", "x", NOW, SHIPPED)
ADDRESSED = Order("R3", "13800138000", "A01", "gift", 3000, "done", "sms", "z", NOW, SHIPPED,
                  "北京市朝阳区建国路88号SOHO现代城A座1203室")
VOUCHER = Order("R2", "13800138000", "B02", "voucher", 500, "done", "ivr", "y", NOW)
ENTRY = LedgerEntry(1, "13800138000", "credit", 120, "bill", "import", NOW, None)


def every_message(language: str) -> list[messages.Message]:
    """One message per builder, and one per branch of the templates' choices."""
    local_day = lambda instant: instant.date()  # noqa: E731
    return [
        messages.JOIN, messages.RATE_LIMITED, messages.SYSTEM_ERROR, messages.UNAVAILABLE,
        messages.UNSUBSCRIBED, messages.REDEEM_USAGE, messages.RESUBSCRIBED, messages.AUTO_USAGE,
        messages.auto_signup_quote_message(CUP, "A01", "123456", 10, language),
        messages.auto_signup_done_message(CUP, "A01", language),
        messages.auto_signup_done_message(None, "Z99", language),
        messages.auto_cancelled_message(True), messages.auto_cancelled_message(False),
        messages.balance_message(1200, 300, date(2026, 12, 31)),
        messages.balance_message(0, 0, None),
        messages.balance_of(Balance("13800138000", 50, 0, None)),
        messages.tier_message(GOLD, language), messages.tier_message(TOP, language),
        messages.history_message([ENTRY], local_day), messages.history_message([], local_day),
        messages.catalogue_message([PricedReward(CUP, 3000, False),
                                    PricedReward(DATA, 450, True)], language, 1),
        messages.catalogue_message([], language, 5),
        messages.delivery_message([ORDER, VOUCHER], {"A01": CUP.name(language)}, language),
        messages.delivery_message([], {}, language),
        messages.help_message(True), messages.help_message(False),
        messages.redeem_quote_message(Quote("13800138000", CUP, 3000, 9300), "123456", 5,
                                      language),
        messages.redeem_done_message(ORDER, CUP.name(language), 6300),
        messages.redeem_done_message(VOUCHER, DATA.name(language), 0),
        messages.redeem_done_message(ADDRESSED, CUP.name(language), 6300),
        messages.fulfil_done_message(VOUCHER, DATA.name(language), "PRV-1"),
        messages.fulfil_done_message(VOUCHER, DATA.name(language), None),
        messages.fulfil_failed_message(VOUCHER, DATA.name(language), "refused", 500),
        messages.fulfil_failed_message(VOUCHER, DATA.name(language), "not_applied", 500),
        *(messages.redeem_failed_message(reason, "A01") for reason in (
            "unknown_reward", "unavailable", "out_of_stock", "limit_reached", "address_needed",
            "other")),
        messages.line_barred_message("suspended"), messages.line_barred_message("arrears"),
        messages.redeem_failed_message("insufficient_points", "A01", balance=100, price=3000),
        messages.confirm_failed_message("no_code"),
        messages.confirm_failed_message("invalid_confirmation", tries_left=2),
        messages.confirm_failed_message("invalid_confirmation", tries_left=0),
        messages.confirm_failed_message("pin_locked", until="16:45"),
        messages.auto_redeem_done_message(CUP, "A01", language, 3000, 6300, "R1"),
        messages.auto_redeem_done_message(None, "Z99", language, 3000, 6300, "R1"),
        messages.auto_redeem_done_message(DATA, "B02", language, 500, 6300, "R2"),
        messages.auto_redeem_short_message(CUP, "A01", language, 3000, 100),
        messages.ticket_message("makeup", "BD2611200001"),
        messages.ticket_message("complaint", "TS2611200001"),
        messages.ticket_usage_message("makeup"), messages.ticket_usage_message("complaint"),
        messages.ticket_status_message(Ticket("BD261120000001", "13800138000", "makeup", "x",
                                              "sms", datetime(2026, 11, 20, tzinfo=UTC))),
        messages.ticket_status_message(Ticket(
            "TS261120000002", "13800138000", "complaint", "x", "ivr",
            datetime(2026, 11, 20, tzinfo=UTC), status="resolved", outcome="Sorry.")),
        messages.ticket_unknown_message("BD261120000009"), messages.ticket_unknown_message(""),
        messages.ticket_resolved_message("makeup", "BD261120000001", "Granted.", 300),
        messages.ticket_resolved_message("complaint", "TS261120000002", "Sorry.", None),
        messages.tier_changed_message(TierConfig("gold", "金卡", "Gold", 5000),
                                      TierConfig("platinum", "白金卡", "Platinum", 20000), True,
                                      date(2027, 12, 31), language),
        messages.expiry_warning_message(800, date(2026, 12, 31), date(2026, 12, 1), "30d",
                                        final=False),
        messages.expiry_warning_message(800, date(2026, 12, 31), date(2026, 12, 24), "7d",
                                        final=True),
    ]


def strict_render(message: messages.Message, language: str) -> str:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    # Stored as JSON in the outbox and rendered from there: render what comes back.
    params = json.loads(json.dumps(message.params))
    return env.get_template(f"{language}/{message.template}.j2").render(**params).strip()


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_message_renders_with_its_template_and_no_default(language):
    for message in every_message(language):
        text = strict_render(message, language)
        assert text and "None" not in text, (message, text)
    for path in (TEMPLATES / language).glob("*.j2"):
        assert "|default" not in path.read_text(encoding="utf-8").replace(" ", ""), path


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_template_has_a_message(language):
    built = {m.template for m in every_message(language)}
    assert built == set(template_names(language))


def test_one_name_per_fact_in_what_the_members_read():
    done = messages.redeem_done_message(ORDER, "Thermos cup", 6300)
    assert render(done.template, "en", done.params) == (
        "Loyalty: you redeemed Thermos cup for 3000 points, order R1; 6300 points left. "
        "Text WL for delivery.")
    pending = messages.redeem_done_message(VOUCHER, "1GB data", 0)
    assert render(pending.template, "en", pending.params) == (
        "Loyalty: you redeemed 1GB data for 500 points, order R2; 0 points left. It is being "
        "applied; you will get an SMS when it is done.")
    auto = messages.auto_redeem_done_message(CUP, "A01", "en", 3000, 6300, "R1")
    assert "6300 points left" in render(auto.template, "en", auto.params)
    assert "is done" in render(auto.template, "en", auto.params)
    applying = messages.auto_redeem_done_message(DATA, "B02", "en", 500, 6300, "R2")
    assert "being applied" in render(applying.template, "en", applying.params)
    changed = messages.tier_changed_message(
        TierConfig("gold", "金卡", "Gold", 5000),
        TierConfig("platinum", "白金卡", "Platinum", 20000), True, date(2027, 12, 31), "zh")
    assert render(changed.template, "zh", changed.params) == (
        "【会员等级】您的会员等级已由金卡升级为白金卡，有效期至2027年12月31日。回复DJ查询等级详情。")


@pytest.mark.parametrize("template, old, language", [
    ("redeem_done", {"order_no": "R1", "reward_code": "A01", "reward_name": "Thermos cup",
                     "reward_kind": "gift", "points": 3000, "balance": 6300, "channel": "ivr"},
     "en"),
    ("redeem_done", {"order_no": "R1", "reward_code": "A01", "reward_name": "Thermos cup",
                     "kind": "gift", "points": 3000, "balance_after": 6300}, "en"),
    ("auto_redeem_done", {"reward_zh": "保温杯", "reward_en": "Thermos cup", "points": 3000,
                          "balance": 6300, "order_no": "R1"}, "zh"),
    ("auto_redeem_short", {"reward_zh": "保温杯", "reward_en": "Thermos cup", "price": 3000,
                           "balance": 100}, "en"),
    ("tier_changed", {"old_zh": "金卡", "old_en": "Gold", "new_zh": "白金卡",
                      "new_en": "Platinum", "up": True, "valid_date": "2027-12-31",
                      "valid_year": 2027, "valid_month": 12, "valid_day": 31}, "en"),
    ("delivery", {"orders": [{"order_no": "R1", "reward_code": "A01", "status": "shipped",
                              "courier": "SF", "tracking_no": "SF1", "updated": None}]}, "zh"),
])
def test_a_row_queued_by_the_previous_release_still_renders(template, old, language):
    text = render(template, language, messages.current_params(template, language, old))
    assert text and "None" not in text


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_remembered_reply_text_is_the_one_rendered_afresh(language):
    # render_fitting keeps texts by their params: asked twice, and after other messages,
    # every reply reads as a fresh render of its own params.
    from sms import render as rendering

    rendering._FITTED.clear()
    for max_parts in (1, 3):
        for message in every_message(language) * 2:
            fresh = rendering._render_fitting(message.template, language, message.params,
                                              max_parts)
            assert rendering.render_fitting(message.template, language, message.params,
                                            max_parts) == fresh, message


def test_a_remembered_reply_text_is_not_given_for_other_params():
    from sms.render import render_fitting

    rewards = [{"code": "A01", "name": "Mug", "price": 100, "in_stock": True}]
    one = render_fitting("catalogue", "en", {"rewards": rewards, "more": False})
    out = render_fitting("catalogue", "en", {"rewards": [dict(rewards[0], in_stock=False)],
                                             "more": False})
    assert one != out
    points = render_fitting("balance", "en", {"points": 1, "expiring_points": 0,
                                              "expiry_date": None})
    flag = render_fitting("balance", "en", {"points": True, "expiring_points": 0,
                                            "expiry_date": None})
    assert "1" in points and "True" in flag


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_direct_render_is_jinjas_render(language):
    # ``render`` runs a template's root function on a context built once per template;
    # every message reads as Jinja's own ``Template.render`` of it.
    from sms import render as rendering

    for message in every_message(language):
        jinja = rendering.environment().get_template(
            f"{language}/{message.template}.j2").render(**message.params)
        assert rendering._render_template(language, message.template, message.params) \
            == jinja, message


def test_a_template_error_is_still_jinjas_error():
    from jinja2 import UndefinedError

    with pytest.raises(UndefinedError):
        render("balance", "en", {})


@pytest.mark.parametrize("language,told", [("zh", "顺丰速运"), ("en", "SF Express")])
def test_a_delivery_names_its_courier_as_configured_and_a_blank_one_not_at_all(language, told):
    couriers = (CourierConfig("SF", "顺丰速运", "SF Express"),)
    blank = Order("R3", "13800138000", "A01", "gift", 3000, "done", "sms", "z", NOW,
                  Delivery("R3", "shipped", "  ", "T3", NOW))
    message = messages.delivery_message([ORDER, blank], {}, language, couriers)
    assert [o["courier"] for o in message.params["orders"]] == [told, None]
    body = render(message.template, language, message.params)
    assert told in body and ",  " not in body and "，  " not in body
