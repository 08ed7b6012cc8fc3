"""Tiers granted by the members import: heard, priced and kept by the tier review."""

import json
from datetime import UTC, date, datetime

import pytest

from core.accounts import review_tier, tier_status
from core.imports import ImportFailed, import_members, import_rewards
from core.redemption import catalogue
from tests.core.import_kit import write

# --- 2. granted tiers -----------------------------------------------------------------------

REWARDS = ("code,name_zh,name_en,kind,points,stock,price_gold\n"
           "S01,流量包,Data pack,service,1000,,600\n")


def test_a_granted_tier_is_heard_priced_and_kept_by_the_review(run, now, tmp_path):
    run(import_members, write(tmp_path, "m.csv", "msisdn,name,language,tier,tier_until\n"
                              "13800138000,张伟,zh,gold,2027-06-30\n"
                              "15800158000,Alice,en,silver,\n"), now)
    run(import_rewards, write(tmp_path, "r.csv", REWARDS), now)
    tier = run(tier_status, "13800138000", now)
    assert (tier.code, tier.valid_until) == ("gold", date(2027, 6, 30))
    assert run(tier_status, "15800158000", now).valid_until == date(2027, 11, 30)
    assert [p.price for p in run(catalogue, "13800138000", now)] == [600]
    assert run(review_tier, "13800138000", now) == ("gold", "gold")
    later = datetime(2027, 3, 1, 4, 0, tzinfo=UTC)
    assert run(review_tier, "13800138000", later) == ("gold", "gold")
    assert run(tier_status, "13800138000", later).code == "gold"
    after = datetime(2027, 7, 2, 4, 0, tzinfo=UTC)
    assert run(review_tier, "13800138000", after) == ("gold", "standard")


def test_a_grant_to_an_existing_member_and_bad_grants(run, now, tmp_path, members):
    run(import_members, write(tmp_path, "m.csv", "msisdn,name,language,tier\n"
                              "13800138000,张伟,zh,diamond\n"), now)
    assert run(tier_status, "13800138000", now).code == "diamond"
    with pytest.raises(ImportFailed) as failed:
        run(import_members, write(tmp_path, "bad.csv", "msisdn,name,language,tier,tier_until\n"
                                  "15800158000,Alice,en,platinum,\n"
                                  "13800138000,张伟,zh,gold,2026-01-01\n"
                                  "13900139000,Bob,en,,2027-01-01\n"), now)
    assert failed.value.errors == [
        (2, "unknown tier 'platinum' (one of standard, silver, gold, diamond)"),
        (3, "tier_until 2026-01-01 is in the past"),
        (4, "tier_until needs a tier")]


def test_the_sms_tier_query_tells_the_granted_tier(store, run, now, tmp_path):
    from sms.handler import HandlerSettings, handle_batch, store_mo_batch
    from sms.render import render
    from tests.sms.channel_helpers import mo

    run(import_members, write(tmp_path, "m.csv", "msisdn,name,language,tier,tier_until\n"
                              "15800158000,Alice,en,gold,2027-06-30\n"), now)
    run(store_mo_batch, [mo("15800158000", "TIER")], now)
    run(handle_batch, HandlerSettings(rate_limit=0), now, 100, None)
    with store.unit_of_work(write=False) as uow:
        (reply,) = uow.messaging.outbox_rows("15800158000")
    text = render(reply["template"], "en", json.loads(reply["params"]))
    assert "Gold" in text and "2027" in text


def test_new_members_with_and_without_a_grant_in_one_file(run, now, tmp_path):
    run(import_members, write(tmp_path, "m.csv", "msisdn,name,language,tier\n"
                              "13800138000,张伟,zh,gold\n15800158000,Alice,en,\n"), now)
    assert run(tier_status, "13800138000", now).code == "gold"
    assert run(tier_status, "15800158000", now).code == "standard"
