"""The ops command line against a real database file."""

import json
import subprocess
import sys

import pytest

from core.cli import main as loyalty
from core.demo import DEMO_MEMBERS
from core.store import Store


@pytest.fixture
def env(monkeypatch, database_url):
    monkeypatch.setenv("LOYALTY_DATABASE_URL", database_url)
    return database_url


def test_demo_then_member_show_json(env, capsys):
    assert loyalty(["demo"]) == 0
    assert "13800138000" in capsys.readouterr().out
    assert loyalty(["member", "show", "+86 138 0013 8000", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["msisdn"] == "13800138000" and shown["language"] == "zh"
    assert set(shown["tier"]) >= {"code", "name", "valid_until", "points_to_next"}
    assert shown["balance"] == 8000 + 4000 + 500 - 200 - 3000
    assert set(shown["next_expiry"]) == {"points", "date"}
    order = shown["orders"][0]
    assert (order["reward_code"], order["status"], order["delivery_status"]) == \
        ("G01", "confirmed", "shipped")
    assert loyalty(["check", "ledger"]) == 0


def test_demo_if_empty_loads_once(env, capsys):
    assert loyalty(["demo", "--if-empty"]) == 0
    assert loyalty(["demo", "--if-empty"]) == 0
    assert "nothing loaded" in capsys.readouterr().out


def add_member(database_url, msisdn):
    from datetime import UTC, datetime

    store = Store(database_url)
    try:
        with store.unit_of_work() as uow:
            uow.members.upsert_members([dict(msisdn=msisdn, name="Not Demo", language="en",
                                             tier_code="standard", warning_opt_out=False,
                                             warning_channel="sms", pin_failures=0,
                                             created_at=datetime.now(UTC))])
    finally:
        store.dispose()


def test_demo_run_again_changes_nothing(env, capsys):
    assert loyalty(["demo"]) == 0
    add_member(env, "13500135000")
    shown = {m: show(m, capsys) for m, _, _ in DEMO_MEMBERS}
    cancelled = shown["15800158000"]["orders"][0]["order_no"]
    assert loyalty(["order", "cancel", cancelled]) == 0
    shown["15800158000"] = show("15800158000", capsys)
    capsys.readouterr()

    assert loyalty(["demo"]) == 0
    out = capsys.readouterr().out
    assert "demo data already loaded; nothing changed" in out
    assert "13500135000" not in out  # only the demo members are listed
    assert all(m in out for m, _, _ in DEMO_MEMBERS)
    assert {m: show(m, capsys) for m, _, _ in DEMO_MEMBERS} == shown
    assert loyalty(["check", "ledger"]) == 0


def test_import_error_exit_code_and_message(env, tmp_path, capsys):
    path = tmp_path / "m.csv"
    path.write_text("msisdn,name,language\n13800138000,A,xx\n")
    assert loyalty(["import", "members", str(path)]) == 1
    assert "line 2: language" in capsys.readouterr().err


def show(msisdn, capsys):
    capsys.readouterr()
    assert loyalty(["member", "show", msisdn, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_order_cancel_refunds(env, capsys):
    loyalty(["demo"])
    before = show("15800158000", capsys)
    order = before["orders"][0]
    assert loyalty(["order", "cancel", order["order_no"]]) == 0
    after = show("15800158000", capsys)
    assert after["balance"] == before["balance"] + order["points"]
    assert after["orders"][0]["status"] == "cancelled"
    assert loyalty(["order", "cancel", order["order_no"]]) == 1


def test_a_schema_behind_is_refused_with_the_fix(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("LOYALTY_DATABASE_URL", f"sqlite:///{tmp_path}/empty.sqlite3")
    assert loyalty(["member", "show", "13800138000"]) == 2
    assert "loyalty db upgrade" in capsys.readouterr().err


def test_installed_command_runs(env):
    out = subprocess.run([sys.executable, "-m", "core.cli", "check", "ledger"],
                         capture_output=True, text=True, check=True).stdout
    assert "ledger consistent" in out


def test_demo_members_have_lines_and_all_but_one_an_address(env, capsys):
    assert loyalty(["demo"]) == 0
    assert loyalty(["demo"]) == 0  # still idempotent
    capsys.readouterr()
    shown = {m: show(m, capsys) for m, _, _ in DEMO_MEMBERS}
    assert all(s["line_status"] == "active" and s["subscriber_id"] for s in shown.values())
    assert [m for m, s in shown.items() if not s["delivery_address"]] == ["18600186000"]
