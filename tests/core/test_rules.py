"""The calendar and points rules at fixed instants."""

import re
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.domain import InsufficientPoints, InvalidMsisdn, PointsLot, mask_msisdn
from core.numbering import NumberingPlan
from core.rules import (
    ProgrammeRules,
    expiry_for,
    last_valid_day,
    plan_spend,
    qualifying_window_start,
    tier_for,
    tier_valid_until,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_points_earned_in_2024_are_gone_at_midnight_shanghai_after_31_december_2026(rules):
    expires = expiry_for(date(2024, 7, 1), rules.programme)
    assert expires == datetime(2027, 1, 1, 0, 0, tzinfo=SHANGHAI)
    # In UTC that instant is still 31 December: the date must come from the programme zone.
    assert expires.astimezone(UTC) == datetime(2026, 12, 31, 16, 0, tzinfo=UTC)
    assert last_valid_day(expires, SHANGHAI) == date(2026, 12, 31)


def test_expiry_rule_follows_the_configured_zone(config):
    from core.config import ProgrammeConfig

    utc_programme = ProgrammeConfig(timezone="UTC")
    assert expiry_for(date(2024, 1, 1), utc_programme) == datetime(2027, 1, 1, tzinfo=UTC)


def lot(lot_id, remaining, expires):
    return PointsLot(lot_id, "13800138000", remaining, remaining, "bill", date(2024, 1, 1),
                     expires, None)


def test_spending_draws_soonest_expiring_lots_first():
    soon = datetime(2026, 12, 31, 16, tzinfo=UTC)
    later = datetime(2027, 12, 31, 16, tzinfo=UTC)
    lots = [lot(1, 500, later), lot(2, 300, soon), lot(3, 100, soon)]
    now = datetime(2026, 6, 1, tzinfo=UTC)
    assert plan_spend(lots, 350, now) == [(2, 300), (3, 50)]
    assert plan_spend(lots, 900, now) == [(2, 300), (3, 100), (1, 500)]
    with pytest.raises(InsufficientPoints) as short:
        plan_spend(lots, 901, now)
    assert (short.value.balance, short.value.price) == (900, 901)


def test_a_lot_at_its_expiry_instant_is_not_spendable():
    expires = datetime(2026, 12, 31, 16, tzinfo=UTC)
    lots = [lot(1, 100, expires)]
    assert plan_spend(lots, 100, datetime(2026, 12, 31, 15, 59, 58, tzinfo=UTC)) == [(1, 100)]
    with pytest.raises(InsufficientPoints):
        plan_spend(lots, 1, expires)


@pytest.mark.parametrize("points, tier", [(0, "standard"), (1999, "standard"), (2000, "silver"),
                                          (5999, "silver"), (6000, "gold"), (15000, "diamond"),
                                          (10**9, "diamond")])
def test_tier_thresholds(rules, points, tier):
    assert tier_for(points, rules.tiers).code == tier


def test_rolling_window_and_tier_validity(rules):
    assert qualifying_window_start(date(2026, 11, 22)) == date(2025, 11, 23)
    assert qualifying_window_start(date(2024, 2, 29)) == date(2023, 3, 1)
    assert tier_valid_until(date(2026, 11, 22), rules.programme) == date(2027, 11, 30)
    assert tier_valid_until(date(2027, 1, 31), rules.programme) == date(2028, 1, 31)


@pytest.mark.parametrize("raw", ["13800138000", "+8613800138000", "8613800138000",
                                 "008613800138000", "013800138000", "138-0013-8000",
                                 "１３８００１３８０００"])
def test_phone_numbers_normalise_to_the_national_form(raw):
    assert NumberingPlan().normalise(raw) == "13800138000"


@pytest.mark.parametrize("raw", ["", "abc", "12", "+86", "1380013800012345678"])
def test_bad_phone_numbers_are_rejected(raw):
    with pytest.raises(InvalidMsisdn):
        NumberingPlan().normalise(raw)


def test_masking_hides_the_middle_digits():
    assert mask_msisdn("13800138000") == "138****8000"
    assert "0013" not in mask_msisdn("13800138000")


@pytest.mark.parametrize("raw, shown", [
    ("8613812345678", "861******5678"), ("+8613812345678", "+86*******5678"),
    ("12345678", "1*****78"),  # 8 digits: only 3 of them shown, not 7
    ("10086", "1**86"), ("1234", "****"), ("", "-"), (None, "-"),
    ("unknown", "unknown"),  # Asterisk's withheld caller id is no number
])
def test_one_masking_rule_for_every_log(raw, shown):
    assert mask_msisdn(raw) == shown


# -- the numbering plan --------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["13800138000", "+8613800138000", "8613800138000",
                                 "008613800138000", "013800138000", "+86 138-0013-8000",
                                 "１３８００１３８０００"])
def test_the_default_plan_takes_every_way_of_writing_a_mainland_mobile(rules, raw):
    assert rules.numbering.normalise(raw) == "13800138000"


@pytest.mark.parametrize("raw", [
    "12345",             # a short code, not a subscriber
    "+1 415 555 0100",   # another country: must not become 141-5555-0100
    "0014155550100",
    "12012345678",       # 11 digits but no mobile prefix
    "1380013800",        # a digit short
    "138001380001",      # a digit too many
    "+8612345", "", "abc", None,
])
def test_the_default_plan_refuses_numbers_outside_it(rules, raw):
    with pytest.raises(InvalidMsisdn):
        rules.numbering.normalise(raw)


def test_the_plan_comes_from_the_configuration(config):
    uk = config.replace("numbering", country_code="44", national_pattern="7[0-9]{9}")
    plan = ProgrammeRules.from_config(uk).numbering
    for raw in ("+44 7700 900123", "00447700900123", "447700900123", "07700 900123"):
        assert plan.normalise(raw) == "7700900123"
    for raw in ("+8613800138000", "13800138000", "+1 415 555 0100"):
        with pytest.raises(InvalidMsisdn):
            plan.normalise(raw)


def test_a_refused_number_is_masked_in_the_error(rules):
    with pytest.raises(InvalidMsisdn) as refused:
        rules.numbering.normalise("+1 415 555 0100")
    assert "555" not in str(refused.value)


def _plan_normalise_before(plan, raw):
    """``NumberingPlan.normalise`` as it was before its fast path for plain digits (the
    reference for the property below)."""
    from core.numbering import _FULLWIDTH_DIGITS

    if raw is None:
        raise InvalidMsisdn("no number")
    text = re.sub(r"[\s\-().]", "", str(raw).strip()).translate(_FULLWIDTH_DIGITS)
    national = None
    for international in ("+", "00"):
        if text.startswith(international):
            rest = text[len(international):]
            national = rest[len(plan.country_code):] if rest.startswith(plan.country_code) \
                else "\0"
            break
    else:
        national = text
        for prefix in (plan.country_code, "0"):
            if text.startswith(prefix) and re.fullmatch(plan.national_pattern,
                                                        text[len(prefix):]):
                national = text[len(prefix):]
                break
    if national == "\0" or not re.fullmatch(plan.national_pattern, national):
        raise InvalidMsisdn(f"outside the numbering plan: {mask_msisdn(text)}")
    return national


@given(st.sampled_from([NumberingPlan(), NumberingPlan("44", "7[0-9]{9}"),
                        NumberingPlan("1", "[2-9][0-9]{9}")]),
       st.one_of(st.from_regex(r"(\+86|0086|86|0|\+44|44)?(1[3-9]|7)[0-9]{8,9}",
                               fullmatch=True),
                 st.from_regex(r"(\+|00|0|86|44)?[0-9０-９ \-().]{0,16}", fullmatch=True),
                 st.text(alphabet="0123456789", max_size=16), st.text(max_size=16)))
def test_the_plan_normalises_as_it_did_before_its_fast_path(plan, raw):
    try:
        expected = _plan_normalise_before(plan, raw)
    except InvalidMsisdn as exc:
        with pytest.raises(InvalidMsisdn, match=re.escape(str(exc))):
            plan.normalise(raw)
    else:
        assert plan.normalise(raw) == expected
