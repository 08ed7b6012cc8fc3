"""A member switched to voice warnings (as ops or the IVR menu would) gets a warning call from
the next warnings run, over the AMI simulator, and no SMS warning."""

from __future__ import annotations

from datetime import date

import pytest
import pytest_twisted

from core.preferences import set_preferences
from tests.core.jobs.conftest import add_lot, add_members, drive, local, outbox_rows
from tests.ivr.hotline_kit import heard
from tests.ivr.test_warning_dialplan import place_warning_call

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pyst2

MEMBER = "13900000043"


@pytest_twisted.ensureDeferred
async def test_switched_to_voice_gets_a_call_and_no_sms(store, rules, config, db):
    add_members(store, MEMBER, language="en", channel="sms")
    add_lot(store, rules, MEMBER, 700, earned_on=date(2024, 1, 5))
    with store.unit_of_work() as uow:
        prefs = set_preferences(uow, rules, MEMBER, local(2026, 11, 30), warning_channel="voice")
    assert prefs.warning_channel == "voice" and prefs.warnings_on
    result = drive(store, rules, config, "expiry-warnings", local(2026, 12, 1, 10, 0))
    assert result.counts.get("voice") == 1
    assert outbox_rows(store, msisdn=MEMBER) == []

    sim, legs = await place_warning_call(config, db, {MEMBER: "T"})

    (originate,) = sim.actions_named("Originate")
    assert MEMBER in originate.get("Channel", "")
    assert "#700" in heard(legs[0])  # the call told her how many points lapse
    assert [r for r in outbox_rows(store, msisdn=MEMBER) if r["kind"] != "reply"] == []
