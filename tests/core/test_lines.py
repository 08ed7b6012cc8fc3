"""Line status, subscriber ids, re-issued numbers and gifts' addresses, through the use cases,
the imports and the `loyalty` command on a real database (both backends)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from core.accounts import balance, check_ledger, credit_points, get_member, history
from core.domain import (
    AddressNeeded,
    Channel,
    LineBarred,
    SecretCheck,
    UnknownMember,
    mask_address,
)
from core.imports import import_line_status, import_members
from core.redemption import (
    confirm_redemption,
    quote_redemption,
    recent_orders,
    redeem,
    start_confirmation,
)
from core.service_desk import queue_sms
from core.store.tables import archived_members, ledger, lots, orders, outbox
from tests.core.helpers import TEST_ADDRESS, add_member, add_reward
from tests.core.import_kit import write

ZHANG = "13800138000"


@pytest.fixture
def rewarded(store, run, now):
    add_member(store, ZHANG, subscriber_id="SUB-1")
    add_reward(store, "A01", points=100)
    add_reward(store, "G01", kind="gift", points=300)
    run(credit_points, ZHANG, 1000, "bill", now.date(), now - timedelta(days=1))


def set_line(run, now, tmp_path, rows: str):
    path = write(tmp_path, "lines.csv", "msisdn,status,subscriber_id,effective\n" + rows)
    return run(import_line_status, path, now)


@pytest.mark.parametrize("status", ["suspended", "arrears"])
def test_a_barred_line_may_ask_but_not_redeem(rewarded, run, now, tmp_path, status):
    code = run(start_confirmation, ZHANG, "A01", Channel.SMS, now)[1]  # issued while active
    report = set_line(run, now, tmp_path, f"{ZHANG},{status},,\n")
    assert (report.updated, report.problems) == (1, ())
    assert run(balance, ZHANG, now).points == 1000  # may still ask
    assert run(history, ZHANG, now)
    for use_case, args in ((quote_redemption, (ZHANG, "A01", now)),
                           (start_confirmation, (ZHANG, "A01", Channel.SMS, now)),
                           (redeem, (ZHANG, "A01", Channel.IVR, "r1", now)),
                           (confirm_redemption, (ZHANG, code, Channel.SMS, now))):
        with pytest.raises(LineBarred) as refused:
            run(use_case, *args)
        assert refused.value.status == status
    assert run(balance, ZHANG, now).points == 1000
    set_line(run, now, tmp_path, f"{ZHANG},active,,\n")
    assert run(redeem, ZHANG, "A01", Channel.IVR, "r1", now).points == 100


def test_a_closed_line_is_no_member_and_a_members_import_does_not_reopen_it(
        rewarded, run, now, tmp_path):
    set_line(run, now, tmp_path, f"{ZHANG},closed,,\n")
    for use_case, args in ((balance, (ZHANG, now)), (history, (ZHANG, now)),
                           (quote_redemption, (ZHANG, "A01", now))):
        with pytest.raises(UnknownMember):
            run(use_case, *args)
    # The monthly members feed brings the number again without a status: still closed.
    run(import_members, write(tmp_path, "m.csv", f"msisdn,name,language\n{ZHANG},张伟,zh\n"),
        now)
    with pytest.raises(UnknownMember):
        run(balance, ZHANG, now)
    # Ops reopening it explicitly is another matter.
    run(import_members, write(tmp_path, "m2.csv",
                              f"msisdn,name,language,status\n{ZHANG},张伟,zh,active\n"), now)
    assert run(balance, ZHANG, now).points == 1000


def test_the_line_status_import_applies_the_good_rows_and_lists_the_bad(
        store, run, now, tmp_path):
    for n in ("13900139000", "15800158000"):
        add_member(store, n)
    later = (now + timedelta(days=3)).date()
    report = set_line(run, now, tmp_path,
                      "13900139000,suspended,,\n"
                      "13612345678,suspended,,\n"          # line 3: no such member
                      "15800158000,asleep,,\n"             # line 4: no such status
                      f"15800158000,arrears,,{later}\n"    # line 5: in the future
                      f"15800158000,arrears,SUB-9,{now.date() - timedelta(days=2)}\n"
                      f"15800158000,active,,{now.date() - timedelta(days=5)}\n")
    assert [line for line, _ in report.problems] == [3, 4, 5]
    assert "no member" in report.problems[0][1] and "future" in report.problems[2][1]
    with store.unit_of_work(write=False) as uow:
        assert uow.members.get_member("13900139000").line_status == "suspended"
        # applied in effective order: the older "active" first, then "arrears"
        alice = uow.members.get_member("15800158000")
    assert (alice.line_status, alice.subscriber_id) == ("arrears", "SUB-9")


def test_a_reissued_number_starts_afresh_and_the_old_account_is_archived(
        rewarded, store, run, now, tmp_path):
    run(redeem, ZHANG, "G01", Channel.SMS, "old-order", now)
    old_code = run(start_confirmation, ZHANG, "A01", Channel.SMS, now)[1]
    run(queue_sms, ZHANG, now, kind="notice", body="for the old owner")
    run(import_members, write(
        tmp_path, "m.csv", f"msisdn,name,language,subscriber_id\n{ZHANG},New Owner,en,SUB-2\n"),
        now)
    # The number: a fresh member, nothing of the old owner's.
    fresh = run(get_member, ZHANG)
    assert (fresh.name, fresh.language, fresh.subscriber_id) == ("New Owner", "en", "SUB-2")
    assert not fresh.has_pin and fresh.delivery_address is None
    assert run(balance, ZHANG, now).points == 0
    assert run(history, ZHANG, now) == []
    assert run(recent_orders, ZHANG) == []
    refused = run(confirm_redemption, ZHANG, old_code, Channel.SMS, now)
    assert isinstance(refused, SecretCheck) and not refused.accepted
    assert run(recent_orders, ZHANG) == []  # the old owner's code redeems nothing
    # The old account: under its archive key, whole, and the ledger still adds up.
    with store.unit_of_work(write=False) as uow:
        arch = uow.conn.execute(select(archived_members)).one()
        assert (arch.archive_key, arch.msisdn, arch.subscriber_id) == ("R000001", ZHANG,
                                                                       "SUB-1")
        assert uow.members.get_member("R000001") is None  # retired: closed to every channel
        old = uow.members.get_member("R000001", include_closed=True)
        assert old.name == "测试" and old.delivery_address == TEST_ADDRESS
        assert uow.members.balance_summary("R000001", now)[0] == 1000 - 300
        assert {r.msisdn for r in uow.conn.execute(select(lots))} == {"R000001"}
        assert {r.msisdn for r in uow.conn.execute(select(ledger))} == {"R000001"}
        assert [r.msisdn for r in uow.conn.execute(select(orders))] == ["R000001"]
        unsent = uow.conn.execute(select(outbox)).all()
        assert [(r.msisdn, r.state) for r in unsent] == [("R000001", "failed")]
    assert run(check_ledger) == []


def test_the_same_subscriber_or_an_unknown_one_is_no_reissue(rewarded, run, now, tmp_path):
    header = "msisdn,name,language,subscriber_id\n"
    run(import_members, write(tmp_path, "a.csv", header + f"{ZHANG},张伟,zh,SUB-1\n"), now)
    run(import_members, write(tmp_path, "b.csv", header + f"{ZHANG},张伟,zh,\n"), now)
    assert run(balance, ZHANG, now).points == 1000


def test_a_reissue_by_the_line_status_import(rewarded, store, run, now, tmp_path):
    report = set_line(run, now, tmp_path, f"{ZHANG},active,SUB-7,\n")
    assert (report.created, report.problems) == (1, ())
    assert run(balance, ZHANG, now).points == 0
    assert run(get_member, ZHANG).subscriber_id == "SUB-7"
    report = set_line(run, now, tmp_path, f"{ZHANG},active,SUB-8,\n")  # and again
    with store.unit_of_work(write=False) as uow:
        assert uow.members.archived_keys(ZHANG) == ["R000001", "R000002"]
    assert run(check_ledger) == []


def test_member_show_finds_the_archived_account_and_names_it_from_the_number(
        rewarded, run, now, tmp_path, cli, capsys):
    set_line(run, now, tmp_path, f"{ZHANG},active,SUB-7,\n")
    assert cli(["member", "show", ZHANG, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["archived_accounts"] == ["R000001"] and shown["balance"] == 0
    assert cli(["member", "show", "r000001"]) == 0
    out = capsys.readouterr().out
    assert "R000001" in out and "closed" in out and "1000 points" in out
    assert cli(["check", "ledger"]) == 0


def test_a_gift_needs_an_address_and_the_order_keeps_a_copy(store, run, now):
    add_member(store, ZHANG)
    add_member(store, "13900139000", address=None)
    add_reward(store, "G01", kind="gift", points=100)
    add_reward(store, "A01", points=100)
    for n in (ZHANG, "13900139000"):
        run(credit_points, n, 1000, "bill", now.date(), now - timedelta(days=1))
    with pytest.raises(AddressNeeded):
        run(quote_redemption, "13900139000", "G01", now)
    with pytest.raises(AddressNeeded):
        run(redeem, "13900139000", "G01", Channel.IVR, "r1", now)
    assert run(redeem, "13900139000", "A01", Channel.IVR, "r2", now).delivery_address is None
    order = run(redeem, ZHANG, "G01", Channel.IVR, "r3", now)
    assert order.delivery_address == TEST_ADDRESS
    with store.unit_of_work() as uow:  # the member moves; the order keeps where it went
        uow.members.update_member(ZHANG, delivery_address="somewhere else")
    assert run(recent_orders, ZHANG)[0].delivery_address == TEST_ADDRESS


def test_an_address_is_masked_in_the_middle():
    assert mask_address("北京市朝阳区建国路88号SOHO现代城A座1203室") == "北京市朝阳区****座1203室"
    assert mask_address("12 High Street,   Springfield") == "12 Hig****gfield"
    assert mask_address("abc") == "a**"
    assert mask_address(None) == ""


def test_the_line_status_command_applies_good_rows_lists_bad_ones_and_fails(
        store, run, now, tmp_path, cli, capsys):
    add_member(store, ZHANG)
    path = write(tmp_path, "lines.csv", "msisdn,status\n13612345678,closed\n"
                 f"{ZHANG},Suspended\n")
    assert cli(["import", "line-status", str(path)]) == 1
    out, err = capsys.readouterr()
    assert "line-status: 2 rows, 0 new, 1 updated, 0 already imported, 1 refused" in out
    assert "line 2: no member with that number" in err
    assert "import line-status: writing 2/2" in err  # progress, on stderr
    with store.unit_of_work(write=False) as uow:
        assert uow.members.get_member(ZHANG).line_status == "suspended"
