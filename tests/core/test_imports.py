"""CSV imports: whole file or nothing, errors with line numbers, idempotent points."""

from datetime import date

import pytest

from core.accounts import balance, check_ledger, history, verify_pin
from core.imports import (
    ImportFailed,
    import_deliveries,
    import_members,
    import_points,
    import_rewards,
)
from core.redemption import redeem


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


MEMBERS = """msisdn,name,language,pin,tier
+8613800138000,张伟,zh,2468,
15800158000,Alice,en,,silver
"""


def test_members_import_normalises_numbers_and_hashes_pins(store, run, now, tmp_path):
    report = run(import_members, write(tmp_path, "m.csv", MEMBERS), now)
    assert (report.rows, report.created, report.updated) == (2, 2, 0)
    with store.unit_of_work() as uow:
        assert uow.members.get_member("13800138000").name == "张伟"
        assert uow.members.get_member("15800158000").tier_code == "silver"
    assert not run(verify_pin, "13800138000", "0000", now).accepted
    again = run(import_members, write(tmp_path, "m2.csv", "msisdn,name,language\n"
                                      "13800138000,张伟伟,zh\n"), now)
    assert (again.created, again.updated) == (0, 1)
    assert run(verify_pin, "13800138000", "2468", now).member.name == "张伟伟"


def test_a_bad_row_names_its_line_and_nothing_is_applied(store, run, now, tmp_path):
    bad = "msisdn,name,language\n13800138000,A,zh\n12,B,zh\n13900139000,C,fr\n"
    with pytest.raises(ImportFailed) as failed:
        run(import_members, write(tmp_path, "bad.csv", bad), now)
    assert [line for line, _ in failed.value.errors] == [3, 4]
    assert "line 4: language must be one of zh, en" in str(failed.value)
    with store.unit_of_work() as uow:
        assert uow.members.count_members() == 0


def test_numbers_outside_the_numbering_plan_are_refused_with_their_line(store, run, now,
                                                                        tmp_path):
    rows = ("msisdn,name,language\n13800138000,A,zh\n12345,B,zh\n+1 415 555 0100,C,en\n"
            "12012345678,D,zh\n+86 139 0013 9000,E,zh\n")
    with pytest.raises(ImportFailed) as failed:
        run(import_members, write(tmp_path, "plan.csv", rows), now)
    assert [line for line, _ in failed.value.errors] == [3, 4, 5]
    assert "outside the numbering plan" in failed.value.errors[1][1]
    with store.unit_of_work() as uow:
        assert uow.members.count_members() == 0


def test_points_for_a_number_outside_the_plan_are_refused(store, run, now, tmp_path):
    from tests.core.helpers import add_member

    add_member(store, "14155550100")  # a mainland number that a US caller id would mimic
    rows = "msisdn,points,source,earned_on,reference\n+14155550100,10,bill,2026-01-01,US1\n"
    with pytest.raises(ImportFailed) as failed:
        run(import_points, write(tmp_path, "p.csv", rows), now)
    assert [line for line, _ in failed.value.errors] == [2]
    assert run(balance, "14155550100", now).points == 0


def test_missing_column_is_reported(run, now, tmp_path):
    with pytest.raises(ImportFailed, match="header lacks column"):
        run(import_members, write(tmp_path, "h.csv", "msisdn,name\n1,2\n"), now)


POINTS = """msisdn,points,source,earned_on,reference
13800138000,500,bill,2026-10-01,BILL-2026-10-1
13800138000,200,tenure,2024-01-01,TEN-2024
13800138000,-50,penalty,2026-10-20,LATE-2026-10
"""


def test_points_import_is_idempotent_by_reference(store, run, now, tmp_path):
    run(import_members, write(tmp_path, "m.csv", MEMBERS), now)
    path = write(tmp_path, "p.csv", POINTS)
    first = run(import_points, path, now)
    second = run(import_points, path, now)
    assert (first.created, first.skipped) == (3, 0)
    assert (second.created, second.skipped) == (0, 3)
    result = run(balance, "13800138000", now)
    assert (result.points, result.next_expiry_points, result.next_expiry_date) == \
        (650, 150, date(2026, 12, 31))  # the penalty came out of the 2024 lot first
    assert [e.kind for e in run(history, "13800138000", now)].count("credit") == 2
    assert run(check_ledger) == []


def test_points_for_unknown_members_and_bad_values_are_rejected_whole(store, run, now, tmp_path):
    run(import_members, write(tmp_path, "m.csv", MEMBERS), now)
    bad = POINTS + "13999999999,10,bill,2026-01-01,X1\n13800138000,abc,bill,2026-01-01,X2\n" \
        "13800138000,10,lottery,2026-01-01,X3\n13800138000,10,bill,2026-13-01,X4\n" \
        "13800138000,10,bill,2026-01-01,BILL-2026-10-1\n"
    with pytest.raises(ImportFailed) as failed:
        run(import_points, write(tmp_path, "p.csv", bad), now)
    assert [line for line, _ in failed.value.errors] == [5, 6, 7, 8, 9]
    assert run(balance, "13800138000", now).points == 0


def test_rewards_and_delivery_updates(store, run, now, tmp_path):
    # a gift goes by post: the member has an address (the members import's address column)
    run(import_members, write(tmp_path, "m.csv", "msisdn,name,language,address\n"
                              "13800138000,张伟,zh,上海市黄浦区南京东路100号\n"), now)
    run(import_points, write(tmp_path, "p.csv", POINTS), now)
    rewards = ("code,name_zh,name_en,kind,points,stock,price_gold,per_member_limit\n"
               "g01,保温杯,Flask,gift,300,5,250,2\na01,通话,Minutes,service,100,,,\n")
    report = run(import_rewards, write(tmp_path, "r.csv", rewards), now)
    assert (report.created, report.updated) == (2, 0)
    with store.unit_of_work() as uow:
        flask = uow.orders.get_reward("G01")
    assert (flask.stock, flask.price_for("gold"), flask.per_member_limit) == (5, 250, 2)
    order = run(redeem, "13800138000", "G01", "sms", "r1", now)
    updates = (f"order_no,status,courier,tracking_no\n{order.order_no},shipped,SF,SF99\n")
    run(import_deliveries, write(tmp_path, "d.csv", updates), now)
    with store.unit_of_work() as uow:
        assert uow.orders.get_order(order.order_no).delivery.tracking_no == "SF99"
    bad = f"order_no,status,courier,tracking_no\n{order.order_no},lost,SF,1\nNOPE,shipped,SF,2\n"
    with pytest.raises(ImportFailed) as failed:
        run(import_deliveries, write(tmp_path, "d2.csv", bad), now)
    assert [line for line, _ in failed.value.errors] == [2, 3]
    with store.unit_of_work() as uow:
        assert uow.orders.get_order(order.order_no).delivery.status == "shipped"
