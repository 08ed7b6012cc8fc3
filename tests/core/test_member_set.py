"""``loyalty member set``: warnings, their channel, the language and the monthly automatic
redemption, against a real database; the tier notices respect the opt-out."""

import json

import pytest

from core.cli import main as loyalty


@pytest.fixture
def env(monkeypatch, database_url):
    monkeypatch.setenv("LOYALTY_DATABASE_URL", database_url)
    return database_url


def show(msisdn, capsys):
    capsys.readouterr()
    loyalty(["member", "show", msisdn, "--json"])
    return json.loads(capsys.readouterr().out)


def test_member_set_changes_what_the_member_chose(env, capsys):
    loyalty(["demo"])
    capsys.readouterr()
    assert loyalty(["member", "set", "+86 138 0013 8000", "--warnings", "off",
                    "--warning-channel", "voice", "--language", "en",
                    "--auto-redeem", "a02"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == ("138****8000: language en, warnings off by voice, "
                           "monthly automatic redemption A02")
    shown = show("13800138000", capsys)
    assert (shown["language"], shown["warning_opt_out"], shown["warning_channel"],
            shown["auto_redeem"]) == ("en", True, "voice", "A02")
    # Another reward replaces the first; off ends it; on again.
    loyalty(["member", "set", "13800138000", "--auto-redeem", "A01", "--warnings", "on"])
    assert capsys.readouterr().out.strip().endswith("warnings on by voice, "
                                                    "monthly automatic redemption A01")
    loyalty(["member", "set", "13800138000", "--auto-redeem", "off"])
    assert capsys.readouterr().out.strip().endswith("monthly automatic redemption off")


def test_member_set_refuses_unknown_rewards_and_members(env, capsys):
    loyalty(["demo"])
    assert loyalty(["member", "set", "13800138000", "--auto-redeem", "Z99"]) == 1
    assert loyalty(["member", "set", "13900000000", "--warnings", "off"]) == 1
    assert loyalty(["member", "set", "13800138000"]) == 1
    err = capsys.readouterr().err
    assert "13900000000" not in err  # never a full number
