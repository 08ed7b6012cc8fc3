"""The hotline with a tier granted by the members import, and with a corrupt account."""

# ruff: noqa: F811 - pytest fixtures imported from tests.ivr.hotline_kit
from __future__ import annotations

import pytest_twisted

from core.imports import import_members
from tests.ivr.hotline_kit import rig  # noqa: F401 - fixture

GRANTED = "13600136000"


@pytest_twisted.ensureDeferred
async def test_an_agent_gets_the_granted_tier_and_its_priority(rig, tmp_path):
    path = tmp_path / "members.csv"
    path.write_text(f"msisdn,name,language,tier,tier_until\n{GRANTED},李娜,zh,gold,2027-06-30\n",
                    encoding="utf-8")
    rig.run(import_members, path, rig.now)
    result = await rig.call(GRANTED, "0")
    assert {k: v for k, v in result.variables_set.items() if k.startswith("LOYALTY")} == {
        "LOYALTY_NEXT": "agent", "LOYALTY_TIER": "gold", "LOYALTY_PRIORITY": "1",
        "LOYALTY_MSISDN": GRANTED, "LOYALTY_REASON": "asked",
        "LOYALTY_LAST_MENU": "main"}


@pytest_twisted.ensureDeferred
async def test_a_corrupt_account_hears_the_system_error_and_goes_to_an_agent(rig):
    from tests.core.helpers import corrupt
    from tests.ivr.hotline_kit import EN_MEMBER, ZH_MEMBER, heard

    corrupt(rig.store, ZH_MEMBER, rig.now)
    result = await rig.call(ZH_MEMBER, "1")
    assert "err_system" in heard(result)
    assert result.variables_set.get("LOYALTY_NEXT") == "agent"
    other = await rig.call(EN_MEMBER, "1")
    assert "err_system" not in heard(other)
