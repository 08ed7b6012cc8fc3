"""A member whose stored points are corrupt breaks nothing for the others."""

import pytest

from core.accounts import balance, tier_status
from core.domain import AccountNeedsAttention
from core.imports import import_points
from tests.core.helpers import corrupt
from tests.core.import_kit import HEADER, points_of, write


def test_a_corrupt_account_breaks_nothing_for_the_others(cli, store, members, run, now,
                                                         tmp_path, capsys):
    run(import_points, write(tmp_path, "p.csv", HEADER + "15800158000,300,bill,2026-10-01,A\n"),
        now)
    corrupt(store, "13800138000", now)
    with pytest.raises(AccountNeedsAttention, match="needs attention"):
        run(balance, "13800138000", now)
    with pytest.raises(AccountNeedsAttention):
        run(tier_status, "13800138000", now)
    assert points_of(run, now, "15800158000") == 300
    with store.unit_of_work() as uow:
        assert set(uow.messaging.balance_summaries(["13800138000", "15800158000"], now)) == \
            {"15800158000"}
    capsys.readouterr()
    assert cli(["check", "ledger"]) == 1
    out = capsys.readouterr().out
    assert "13800138000: lots hold" in out and "account needs attention" in out
    assert "15800158000" not in out
    assert cli(["member", "show", "13800138000"]) == 1
    shown = capsys.readouterr().out
    assert "ACCOUNT NEEDS ATTENTION" in shown and "more than any balance can hold" in shown
    assert cli(["member", "show", "15800158000"]) == 0
    assert "balance  300 points" in capsys.readouterr().out


def test_a_corrupt_account_does_not_stop_an_sms_batch(store, members, run, now, tmp_path):
    from sms.handler import HandlerSettings, handle_batch, store_mo_batch
    from tests.sms.channel_helpers import mo

    run(import_points, write(tmp_path, "p.csv", HEADER + "15800158000,300,bill,2026-10-01,A\n"),
        now)
    corrupt(store, "13800138000", now)
    run(store_mo_batch, [mo("13800138000", "JF"), mo("15800158000", "BALANCE")], now)
    run(handle_batch, HandlerSettings(rate_limit=0), now, 100, None)
    with store.unit_of_work(write=False) as uow:
        (good,) = uow.messaging.outbox_rows("15800158000")
        broken = uow.messaging.outbox_rows("13800138000")
    assert good["template"] == "balance" and '"points": 300' in good["params"]
    assert [r["template"] for r in broken] != ["balance"]


def test_a_credit_never_lifts_a_balance_above_the_cap(store, run, rules, now):
    """Make-up credits and demo credits go through credit_points: the cap that imports keep
    (programme.max_balance) holds for them too, and a refused credit leaves no trace."""
    from dataclasses import replace

    from core.accounts import credit_points
    from core.domain import InvalidInput
    from tests.core.helpers import add_member

    capped = replace(rules, programme=replace(rules.programme, max_balance=1_000,
                                              max_points_per_row=800))
    add_member(store, "15800158000")
    earned = capped.today(now)
    with store.unit_of_work() as uow:
        credit_points(uow, capped, "15800158000", 800, "bill", earned, now)
    for points, match in ((801, "max_points_per_row"), (201, "max_balance")):
        with pytest.raises(InvalidInput, match=match), store.unit_of_work() as uow:
            credit_points(uow, capped, "15800158000", points, "bill", earned, now)
    with store.unit_of_work() as uow:
        credit_points(uow, capped, "15800158000", 200, "bill", earned, now)
    assert run(balance, "15800158000", now).points == 1_000
