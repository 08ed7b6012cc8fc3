"""A member whose data makes a query fail (corrupt lots, any unexpected error) hears "we cannot
complete your request right now, please try again later" at each answer that needs the data,
and the log gets one line for the call, not a traceback per key pressed."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from core.store.members_sql import SqlMembers
from tests.core.helpers import corrupt_lots
from tests.ivr.hotline_kit import (  # noqa: F401 - fixtures
    EN_MEMBER,
    ZH_MEMBER,
    prompts_heard,
    rig,
)


@pytest.fixture
def problems():
    """The lines the log gets at warning level or above (a traceback counts its lines)."""
    lines: list[str] = []

    def observe(event: dict) -> None:
        if event.get("log_level", LogLevel.info) < LogLevel.warn:
            return
        lines.extend((formatEvent(event) or "").splitlines())
        if event.get("log_failure") is not None:
            lines.extend(event["log_failure"].getTraceback().splitlines())

    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)


@pytest.mark.parametrize("breakage", ["overflow", "exception"])
@pytest_twisted.ensureDeferred
async def test_a_member_whose_data_fails_hears_try_later_and_the_log_stays_short(
        rig, monkeypatch, problems, breakage):  # noqa: F811
    if breakage == "overflow":
        if not rig.store.is_sqlite:
            pytest.skip("PostgreSQL's SUM of integers does not overflow; see 'exception'")
        corrupt_lots(rig.store, ZH_MEMBER, rig.now)
    else:
        original = SqlMembers.balance_summary

        def failing(self, msisdn, now):
            if msisdn == ZH_MEMBER:
                raise RuntimeError(f"corrupt record of {msisdn}")
            return original(self, msisdn, now)

        monkeypatch.setattr(SqlMembers, "balance_summary", failing)
    result = await rig.call(ZH_MEMBER, keys="123")  # balance, tier, history: all need it
    heard = prompts_heard(result)
    assert heard[:2] == ["welcome", "err_system"]  # 1 keyed during the welcome
    assert heard.count("err_system") == 3
    assert len(problems) == 1, "\n".join(problems)
    assert ZH_MEMBER not in problems[0] and "138****8000" in problems[0]
    # Another member's call is not affected.
    other = await rig.call(EN_MEMBER, keys="1", language="en")
    assert "err_system" not in prompts_heard(other)
    assert len(problems) == 1
