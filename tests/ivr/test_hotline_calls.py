"""The hotline as a call: who is calling, the way out to an agent, hang-ups of every kind, odd
strings on the wire, missing prompts, call records and metrics."""

# ruff: noqa: F811 - pytest fixtures imported from tests.ivr.hotline_kit
from __future__ import annotations

import gc

import pytest
import pytest_twisted
from twisted.internet import tcp

from core.accounts import get_member, set_language
from core.service_desk import update_delivery
from harness.simulator import SimulatorProtocol
from ivr.agi import AGIChannel, FastAGIProtocol
from ivr.prompt_ids import HOTLINE, USED
from tests.core.helpers import add_member
from tests.ivr.conftest import sleep
from tests.ivr.hotline_kit import (  # noqa: F401 - fixtures
    DIAMOND,
    EN_MEMBER,
    MANIFEST,
    ZH_MEMBER,
    after,
    heard,
    logged_failures,
    rig,
    rig_factory,
    wrap_db,
)


def loyalty_vars(result) -> dict[str, str]:
    """The routing variables (the agent's context ones are in tests/ivr/test_hotline_care.py)."""
    return {k: v for k, v in result.variables_set.items()
            if k in ("LOYALTY_NEXT", "LOYALTY_TIER", "LOYALTY_PRIORITY")}


# -- who is calling ---------------------------------------------------------------------------


@pytest.mark.parametrize("callerid", [None, "10086", "+86 139-0013-9000x"])
@pytest_twisted.ensureDeferred
async def test_an_unknown_or_withheld_caller_keys_in_number_and_pin(rig, callerid):
    result = await rig.call(callerid, "+8615800158000#".replace("+", "") + "1234#" + "2T",
                            language="zh")
    tokens = heard(result)
    assert tokens[:5] == ["answer", "set:CHANNEL(language)=zh", "welcome", "auth_enter_number",
                          "k:8615800158000#"]
    # the member is known once the number is keyed in: the PIN prompt is in English already
    assert after(tokens, "k:8615800158000#")[:4] == ["k:8615800158000#",
                                                     "set:CHANNEL(language)=en",
                                                     "auth_enter_pin", "k:1234#"]
    assert "bal_is" in tokens
    records = {r["uniqueid"]: r for r in rig.call_records()}
    assert records[result.uniqueid]["msisdn_masked"] == "158****8000"
    assert records[result.uniqueid]["menu_path"].startswith("id:pin-ok,2")


@pytest_twisted.ensureDeferred
async def test_a_number_that_is_not_a_member_is_asked_again(rig):
    result = await rig.call(None, "13312345678#" "12#" "13800138000#" "1234#" "T")
    tokens = heard(result)
    assert [t for t in tokens if t.startswith(("auth_", "err_"))][:5] == [
        "auth_enter_number", "auth_not_member", "auth_enter_number", "err_help",
        "auth_enter_number"]
    assert "menu_main" in tokens


@pytest_twisted.ensureDeferred
async def test_three_wrong_pins_at_identification_lock_and_end_politely(rig):
    result = await rig.call(None, "13800138000#" "1111#" "2222#" "3333#")
    tokens = heard(result)
    assert after(tokens, "k:1111#")[:7] == [
        "k:1111#", "auth_wrong_pin", "k:2222#", "auth_wrong_pin", "k:3333#", "auth_pin_locked",
        "goodbye"]
    assert "menu_main" not in tokens and loyalty_vars(result) == {}
    assert rig.run(get_member, ZH_MEMBER).pin_locked_until is not None
    record = next(r for r in rig.call_records() if r["uniqueid"] == result.uniqueid)
    assert record["outcome"] == "pin-locked"


@pytest_twisted.ensureDeferred
async def test_retry_limit_while_identifying_goes_to_an_agent_without_a_tier(rig):
    result = await rig.call(None, "TTTT")
    assert loyalty_vars(result) == {"LOYALTY_NEXT": "agent", "LOYALTY_TIER": "",
                                    "LOYALTY_PRIORITY": "0"}


@pytest_twisted.ensureDeferred
async def test_the_dialplan_can_pass_the_members_number_as_argument(rig):
    # the expiry-warning call continues to the hotline: caller id is the short code
    result = await rig.call("10086", "2T", args=[EN_MEMBER])
    tokens = heard(result)
    assert "auth_enter_number" not in tokens and "bal_is" in tokens
    assert tokens[1] == "set:CHANNEL(language)=en"


@pytest.mark.parametrize("callerid, args", [
    ("+1 415 555 0100", []),  # a US caller id, not the mainland 141-5555-0100
    ("10086", ["+14155550100"]),
])
@pytest_twisted.ensureDeferred
async def test_a_caller_outside_the_numbering_plan_is_not_taken_for_a_member(rig, callerid,
                                                                             args):
    add_member(rig.store, "14155550100", name="Lookalike")
    result = await rig.call(callerid, "12345#" "TTTT", args=args)
    tokens = heard(result)
    assert tokens[:4] == ["answer", "set:CHANNEL(language)=zh", "welcome", "auth_enter_number"]
    assert after(tokens, "k:12345#")[:2] == ["k:12345#", "auth_not_member"]
    assert "menu_main" not in tokens and "bal_is" not in tokens
    assert loyalty_vars(result)["LOYALTY_NEXT"] == "agent"
    assert loyalty_vars(result)["LOYALTY_TIER"] == ""
    assert [r["msisdn_masked"] for r in rig.call_records()] != ["141****0100"]


@pytest.mark.parametrize("channel_language,expected", [
    ("en_GB", "en"), ("zh_CN", "zh"), ("fr", "zh"), ("", "zh")])
@pytest_twisted.ensureDeferred
async def test_language_of_an_unknown_caller_follows_the_channel(rig, channel_language,
                                                                 expected):
    result = await rig.call(None, "H", language=channel_language)
    assert heard(result)[1] == f"set:CHANNEL(language)={expected}"
    welcome = next(e for e in result.transcript if e.value == "loyalty/welcome")
    assert welcome.detail == MANIFEST.text("welcome", expected)


# -- the way out --------------------------------------------------------------------------


@pytest.mark.parametrize("keys,first_error", [("TTTT", "err_no_input"),
                                              ("7#87", "err_invalid_key")])
@pytest_twisted.ensureDeferred
async def test_retry_limit_goes_to_an_agent_with_the_tier(rig, keys, first_error):
    result = await rig.call(ZH_MEMBER, keys)
    tokens = heard(result)
    errors = [t for t in tokens if t.startswith("err_")]
    assert errors == [first_error, "err_help", "err_help", "err_too_many"]
    if keys == "TTTT":  # silence: the menu again after each lead (a key cuts the lead short)
        assert tokens.count("menu_main") == 4
    assert loyalty_vars(result) == {"LOYALTY_NEXT": "agent", "LOYALTY_TIER": "gold",
                                    "LOYALTY_PRIORITY": "1"}
    assert tokens[-1] == "agent_transfer" and result.hung_up_by == "server"
    await rig.settle()
    record = next(r for r in rig.call_records() if r["uniqueid"] == result.uniqueid)
    assert record["outcome"] == "agent"


@pytest.mark.parametrize("msisdn,tier,priority", [(ZH_MEMBER, "gold", "1"),
                                                  (EN_MEMBER, "silver", "0"),
                                                  (DIAMOND, "diamond", "1")])
@pytest_twisted.ensureDeferred
async def test_0_goes_to_an_agent_with_the_tier(rig, msisdn, tier, priority):
    result = await rig.call(msisdn, "0")
    assert loyalty_vars(result) == {"LOYALTY_NEXT": "agent", "LOYALTY_TIER": tier,
                                    "LOYALTY_PRIORITY": priority}
    assert heard(result)[-1] == "agent_transfer"


@pytest_twisted.ensureDeferred
async def test_outside_agent_hours_the_call_ends_politely(rig_factory):
    rig = rig_factory(agents_open="22:00-07:00")  # the test instant is 12:00 in Shanghai
    result = await rig.call(ZH_MEMBER, "0")
    assert loyalty_vars(result) == {"LOYALTY_NEXT": "closed"}
    assert heard(result)[-2:] == ["agent_closed", "goodbye"]
    record = next(r for r in rig.call_records() if r["uniqueid"] == result.uniqueid)
    assert record["outcome"] == "closed" and record["menu_path"] == "0"


# -- hang-ups -----------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_hangup_while_the_server_is_idle(rig, logged_failures):
    proxy = wrap_db(rig)
    proxy.delay["menu_snapshot"] = 0.5  # the server waits on the database: nothing outstanding
    result = await rig.call(ZH_MEMBER, "2", hangup_when_idle_after=0.15)
    assert result.hung_up_by == "caller"
    # 2 keyed during the welcome: the balance is being read when the caller hangs up
    assert result.commands[-1] == 'STREAM FILE "loyalty/welcome" "123456790"'
    assert "bal_is" not in heard(result)  # nothing sent after the HANGUP event
    record = next(r for r in rig.call_records() if r["uniqueid"] == result.uniqueid)
    assert record["outcome"] == "hangup" and record["menu_path"] == "2"
    assert logged_failures == []


@pytest_twisted.ensureDeferred
async def test_hangup_mid_command(rig, logged_failures):
    # H while GET DATA collects the PIN: result=-1, then HANGUP
    result = await rig.call(ZH_MEMBER, "411" "12H")
    pin = result.commands.index('GET DATA "loyalty/redeem_enter_pin" "5000" "8"')
    # -1 is also what a missing prompt gives: if the HANGUP line is not in yet, the server
    # tries the input once more without the prompt, gets 511 and stops
    assert result.commands[pin + 1:] in ([], ['GET DATA "" "5000" "8"'])
    assert heard(result)[-2:] == ["k:12", "hangup"]
    record = next(r for r in rig.call_records() if r["uniqueid"] == result.uniqueid)
    assert record["outcome"] == "hangup" and record["menu_path"] == "4:A01"
    assert logged_failures == []


@pytest_twisted.ensureDeferred
async def test_511_after_a_hangup_whose_hangup_line_never_came(rig, logged_failures,
                                                               monkeypatch):
    original = SimulatorProtocol._write

    def no_hangup_lines(self, *lines):
        original(self, *(line for line in lines if line != "HANGUP"))

    monkeypatch.setattr(SimulatorProtocol, "_write", no_hangup_lines)
    result = await rig.call(ZH_MEMBER, "2", hangup_at_command=5)
    # the server sent one more command, got 511 and stopped
    assert len(result.commands) == 6
    assert result.hung_up_by == "caller"
    record = next(r for r in rig.call_records() if r["uniqueid"] == result.uniqueid)
    assert record["outcome"] == "hangup"
    assert logged_failures == []


# -- the wire -----------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_odd_courier_and_tracking_strings_are_quoted_exactly(rig):
    order = rig.ledger(ZH_MEMBER)[0].order_no
    courier, tracking = 'Yun "Da" \\ Express', "YT 12\"3\\4 'x'"
    rig.run(update_delivery, order, "in_transit", courier, tracking, rig.now)
    # In English: a Mandarin call never spells a courier without a recorded name.
    rig.run(set_language, ZH_MEMBER, "en", rig.now)
    result = await rig.call(ZH_MEMBER, "5T", language="en")
    tokens = heard(result)
    assert after(tokens, "dlv_courier")[:4] == ["dlv_courier", f"a:{courier}", "dlv_tracking",
                                                f"a:{tracking}"]
    assert 'SAY ALPHA "Yun \\"Da\\" \\\\ Express" "#"' in result.commands
    assert 'SAY ALPHA "YT 12\\"3\\\\4 \'x\'" "#"' in result.commands
    assert "dlv_status_in_transit" in tokens


@pytest_twisted.ensureDeferred
async def test_a_missing_prompt_does_not_kill_the_call(rig):
    missing = frozenset({"menu_main", "bal_is", "redeem_enter_pin"})
    result = await rig.call(ZH_MEMBER, "2T" "411" "1234#" "1", missing=missing)
    tokens = heard(result)
    assert "missing:menu_main" in tokens and "missing:bal_is" in tokens
    assert after(tokens, "missing:bal_is")[:2] == ["missing:bal_is", "#9300"]
    # GET DATA with a missing prompt: the PIN is still collected, without the prompt
    assert 'GET DATA "" "5000" "8"' in result.commands
    assert "redeem_accepted" in tokens  # a service: being applied
    assert rig.balance(ZH_MEMBER) == 9300 - 900


# -- records, metrics, prompt ids --------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_every_call_is_recorded_and_the_metrics_move(rig):
    results = [await rig.call(ZH_MEMBER, "1T2" "H"),
               await rig.call(None, "H"),
               await rig.call(EN_MEMBER, "0")]
    records = {r["uniqueid"]: r for r in rig.call_records()}
    first, withheld, agent = (records[r.uniqueid] for r in results)
    assert first["msisdn_masked"] == "138****8000" and first["menu_path"] == "1,2"
    assert first["outcome"] == "hangup" and first["script"] == "loyalty"
    assert first["started_at"] <= first["ended_at"]
    assert withheld["msisdn_masked"] == "-" and withheld["outcome"] == "hangup"
    assert agent["outcome"] == "agent" and agent["menu_path"] == "0"
    m = rig.metrics
    assert m.calls.labels(script="loyalty", outcome="hangup")._value.get() == 2
    assert m.calls.labels(script="loyalty", outcome="agent")._value.get() == 1
    assert m.calls_active._value.get() == 0
    think = m.registry.get_sample_value("loyalty_agi_think_seconds_count")
    commands = sum(len(r.commands) for r in results)
    assert think == commands  # one think time per command (the first: after the header)


@pytest_twisted.ensureDeferred
async def test_a_finished_call_is_freed_without_waiting_for_the_cyclic_collector(rig):
    # tune_gc() makes full collections rare: a call whose objects sat in reference cycles
    # stayed in memory for many minutes after it ended, and the server grew under load.
    gc.collect()
    gc.disable()
    try:
        results = [await rig.call(ZH_MEMBER, "2T"),      # ends normally
                   await rig.call(ZH_MEMBER, "411" "12H"),  # hangs up mid-command
                   await rig.call(EN_MEMBER, "0")]          # to an agent
        await sleep(0.1)  # the server's side of the last connection is closed too
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left = [type(o).__name__ for o in gc.garbage
                if isinstance(o, FastAGIProtocol | AGIChannel | tcp.Server)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert "bal_is" in heard(results[0]) and heard(results[1])[-1] == "hangup"
    assert left == []


def test_prompt_ids_are_in_the_manifest():
    assert HOTLINE <= USED
    assert USED <= set(MANIFEST.ids)
    assert "auth_pin_not_set" in HOTLINE
