"""Voice warnings end to end over real TCP: the dispatcher against the AMI simulator (the real
AMI wire protocol through pyst2), and the ``expiry-warning`` FastAGI flow driven by the call
simulator against a real ``FastAGIFactory``."""

from __future__ import annotations

from datetime import date

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from harness.ami_simulator import AMISimulator
from harness.simulator import simulate_call
from ivr.agi import FastAGIFactory
from ivr.ami import AMIDialer
from ivr.flows.expiry_warning import make_expiry_warning_flow
from ivr.voice_warnings import VoiceWarningService
from tests.core.jobs.conftest import (
    add_lot,
    add_members,
    drive,
    local,
    outbox_rows,
    warning_rows,
)
from tests.ivr.hotline_kit import FixedTime

# pyst2 0.5.1 calls Thread.setDaemon / Event.isSet / currentThread (deprecated since 3.10).
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

USER, SECRET = "loyalty", "s3cret"
ANSWERS, RINGS_OUT, BUSY = "13800000001", "13800000002", "13800000003"


@pytest_twisted.async_yield_fixture
async def ami():
    sim = AMISimulator(USER, SECRET, originate_delay=0.02,
                       outcomes={ANSWERS: "answered", RINGS_OUT: "no-answer", BUSY: "busy"})
    port = sim.listen(0)
    dialer = AMIDialer("127.0.0.1", port.getHost().port, USER, SECRET, caller_id="10086",
                       action_timeout_s=2, reactor=reactor)
    dialer.start()
    yield sim, dialer
    await dialer.stop()
    sim.close()
    await port.stopListening()


def voice_warnings(store, rules, config, *msisdns, points=600):
    add_members(store, *msisdns, channel="voice")
    for m in msisdns:
        add_lot(store, rules, m, points, earned_on=date(2024, 1, 5))
    drive(store, rules, config, "expiry-warnings", local(2026, 12, 1, 10, 0))
    return {w["msisdn"]: w for w in warning_rows(store)}


async def settle(service: VoiceWarningService) -> None:
    """Poll, then wait until every call started (and any polls they trigger) is recorded."""
    await service.poll()
    while service.in_flight or service._polls.busy:
        pending = [*service.in_flight.values(), service._polls.when_idle()]
        await defer.DeferredList(pending)


def states(store):
    return {w["msisdn"]: (w["state"], w["attempts"]) for w in warning_rows(store)}


@pytest_twisted.ensureDeferred
async def test_answered_no_answer_and_busy_with_retries(store, rules, config, db, ami):
    sim, dialer = ami
    warned = voice_warnings(store, rules, config, ANSWERS, RINGS_OUT, BUSY)
    ami_config = config.replace("ami", retries=2, retry_after_s=1800, max_concurrent_calls=3)
    clock = FixedTime(local(2026, 12, 1, 10, 5))
    service = VoiceWarningService(ami_config, db, dialer, reactor=reactor, clock=clock)

    await settle(service)
    assert states(store) == {ANSWERS: ("called", 1), RINGS_OUT: ("pending", 1),
                             BUSY: ("pending", 1)}
    originates = sim.actions_named("Originate")
    assert len(originates) == 3
    first = next(a for a in originates if a.get("Channel") == f"Local/{ANSWERS}@from-loyalty")
    assert first.variables() == {"LOYALTY_MSISDN": ANSWERS,
                                 "LOYALTY_WARNING_ID": str(warned[ANSWERS]["id"])}
    assert (first.get("Context"), first.get("Exten"), first.get("Priority"),
            first.get("Async")) == ("loyalty-warning", "s", "1", "true")

    clock.now += 1799  # not yet time to retry
    await settle(service)
    assert len(sim.actions_named("Originate")) == 3
    clock.now += 1  # retry 1
    await settle(service)
    assert states(store)[RINGS_OUT] == ("pending", 2)
    clock.now += 1800  # retry 2, the last
    await settle(service)
    assert states(store) == {ANSWERS: ("called", 1), RINGS_OUT: ("failed", 3),
                             BUSY: ("failed", 3)}
    clock.now += 1800
    await settle(service)
    assert len(sim.actions_named("Originate")) == 7  # 1 + 3 + 3
    assert sorted(o for _, o, _ in service.outcomes) == ["answered"] + ["busy"] * 3 + \
        ["no-answer"] * 3


@pytest_twisted.ensureDeferred
async def test_no_calls_outside_calling_hours(store, rules, config, db, ami):
    sim, dialer = ami
    voice_warnings(store, rules, config, ANSWERS)
    for hour, minute in ((8, 59), (20, 0), (23, 30)):
        service = VoiceWarningService(config, db, dialer, reactor=reactor,
                                      clock=FixedTime(local(2026, 12, 1, hour, minute)))
        await settle(service)
    assert sim.actions_named("Originate") == []
    assert states(store) == {ANSWERS: ("pending", 0)}


@pytest_twisted.ensureDeferred
async def test_concurrent_calls_are_limited(store, rules, config, db, ami):
    sim, dialer = ami
    sim.originate_delay = 0.3  # each call rings a while
    numbers = [f"1380000010{n}" for n in range(4)]
    voice_warnings(store, rules, config, *numbers)
    in_flight, peak = [0], [0]

    class CountingDialer:
        def originate(self, msisdn, variables):
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])

            def done(result):
                in_flight[0] -= 1
                return result

            return dialer.originate(msisdn, variables).addBoth(done)

    service = VoiceWarningService(config.replace("ami", max_concurrent_calls=2), db,
                                  CountingDialer(), reactor=reactor,
                                  clock=FixedTime(local(2026, 12, 1, 10, 5)))
    await settle(service)
    assert peak[0] == 2
    assert sim.max_in_flight == 2  # two calls really rang at the same time
    assert {s for s, _ in states(store).values()} == {"called"}
    assert len(sim.actions_named("Originate")) == 4


@pytest_twisted.ensureDeferred
async def test_ami_down_uses_no_try(store, rules, config, db):
    voice_warnings(store, rules, config, ANSWERS)
    dialer = AMIDialer("127.0.0.1", 1, USER, SECRET, caller_id="10086", action_timeout_s=1,
                       reactor=reactor)
    dialer.start()
    try:
        service = VoiceWarningService(config, db, dialer, reactor=reactor,
                                      clock=FixedTime(local(2026, 12, 1, 10, 5)))
        await settle(service)
        assert service.outcomes[0][1:] == ("not-placed", "pending")
        assert states(store) == {ANSWERS: ("pending", 0)}
        await settle(service)  # paused after the failure: no second attempt at once
        assert len(service.outcomes) == 1
    finally:
        await dialer.stop()


# --- the expiry-warning call -----------------------------------------------------------------


@pytest_twisted.async_yield_fixture
async def agi(db, config):
    clock = FixedTime(local(2026, 12, 1, 10, 5))
    factory = FastAGIFactory({"expiry-warning": make_expiry_warning_flow(config, db, clock=clock)},
                             clock=reactor)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    yield port.getHost().port
    await port.stopListening()


async def call(port, warning, keys, *, msisdn=None, language="zh"):
    return await simulate_call(
        "127.0.0.1", port, script="expiry-warning", callerid="10086", language=language,
        keys=keys, timeout_s=10,
        variables={"LOYALTY_MSISDN": msisdn or warning["msisdn"],
                   "LOYALTY_WARNING_ID": str(warning["id"])})


def heard(result):
    from ivr.flows.expiry_warning import PROMPT_IDS

    events = [(e.kind, e.value) for e in result.transcript
              if e.kind in ("prompt", "number", "datetime", "keys", "variable")]
    assert {v.removeprefix("loyalty/") for k, v in events if k == "prompt"} <= PROMPT_IDS
    return events


@pytest_twisted.ensureDeferred
async def test_call_says_points_and_date_and_2_sends_an_sms_copy(store, rules, config, agi):
    warning = voice_warnings(store, rules, config, ANSWERS, points=1200)[ANSWERS]
    result = await call(agi, warning, "2")
    events = heard(result)
    assert events[:7] == [
        ("variable", "CHANNEL(language)=zh"), ("prompt", "loyalty/warn_intro"),
        ("prompt", "loyalty/warn_you_have"), ("number", "1200"),
        ("prompt", "loyalty/unit_points"), ("prompt", "loyalty/warn_expire_on"),
        ("datetime", events[6][1])]
    said = next(e for e in result.transcript if e.kind == "datetime")
    assert said.detail.startswith("2026-12-31 12:00:00 Asia/Shanghai")
    assert "'digits/2' 'digits/0' 'digits/2' 'digits/6' 'digits/year' Bd" in said.detail
    assert ("keys", "2") in events and ("prompt", "loyalty/sms_sent") in events
    assert result.hung_up_by == "server"
    (sms,) = outbox_rows(store)
    assert (sms["msisdn"], sms["template"], sms["dedupe_key"]) == (
        ANSWERS, "expiry_warning", f"expiry-copy:{warning['id']}")
    assert sms["params"]["points"] == 1200 and sms["params"]["date"] == "2026-12-31"

    await call(agi, warning, "2")  # pressing 2 on a second call: still one copy
    assert len(outbox_rows(store)) == 1


@pytest_twisted.ensureDeferred
async def test_1_goes_to_the_hotline_menu(store, rules, config, agi):
    add_members(store, BUSY, language="en", channel="voice")
    add_lot(store, rules, BUSY, 300, earned_on=date(2024, 1, 5))
    drive(store, rules, config, "expiry-warnings", local(2026, 12, 1, 10, 0))
    (warning,) = warning_rows(store)
    result = await call(agi, warning, "1")
    assert result.variables_set["LOYALTY_NEXT"] == "hotline"
    assert result.variables_set["CHANNEL(language)"] == "en"
    said = next(e for e in result.transcript if e.kind == "datetime")
    assert "format='BdY'" in said.detail
    assert not any(c.startswith("HANGUP") for c in result.commands)
    assert outbox_rows(store) == []


@pytest_twisted.ensureDeferred
async def test_pressing_during_the_message_and_silence(store, rules, config, agi):
    warning = voice_warnings(store, rules, config, ANSWERS)[ANSWERS]
    skipped = await call(agi, warning, "#2")  # "#" skips the read-out, then 2
    assert [k for k, _ in heard(skipped)][:3] == ["variable", "prompt", "keys"]
    assert ("prompt", "loyalty/sms_sent") in heard(skipped)
    wrong = await call(agi, warning, "52")
    assert [v for k, v in heard(wrong) if k == "prompt"][-4:] == [
        "loyalty/err_invalid_key", "loyalty/warn_options", "loyalty/sms_sent", "loyalty/goodbye"]
    silent = await call(agi, warning, "")
    kinds = [v for k, v in heard(silent) if k == "prompt"]
    assert kinds.count("loyalty/warn_options") == 3 and kinds[-1] == "loyalty/goodbye"
    assert "loyalty/err_no_input" in kinds


def test_prompt_ids_are_declared_and_in_the_manifest():
    from ivr.flows.expiry_warning import PROMPT_IDS
    from prompts.manifest import load_manifest

    manifest = load_manifest()
    assert all(prompt_id in manifest for prompt_id in PROMPT_IDS)


@pytest_twisted.ensureDeferred
async def test_unknown_or_mismatched_warning(store, rules, config, agi):
    warning = voice_warnings(store, rules, config, ANSWERS)[ANSWERS]
    result = await call(agi, warning, "2", msisdn=RINGS_OUT)
    assert [v for k, v in heard(result) if k == "prompt"] == ["loyalty/err_system"]
    assert outbox_rows(store) == []


@pytest_twisted.ensureDeferred
async def test_dispatcher_to_call_flow_end_to_end(store, rules, config, db, agi):
    """AMI answers the call and runs the FastAGI script with the variables of the Originate;
    the member presses 2 and gets the SMS copy."""
    warning = voice_warnings(store, rules, config, ANSWERS, points=1500)[ANSWERS]
    results = []

    async def answered(call_info):
        results.append(await simulate_call(
            "127.0.0.1", agi, script="expiry-warning", callerid=call_info.number, keys="2",
            variables=dict(call_info.variables), timeout_s=10))

    sim = AMISimulator(USER, SECRET, originate_delay=0.02,
                       on_answered=lambda c: defer.Deferred.fromCoroutine(answered(c)))
    port = sim.listen(0)
    dialer = AMIDialer("127.0.0.1", port.getHost().port, USER, SECRET, caller_id="10086",
                       action_timeout_s=2, reactor=reactor)
    dialer.start()
    try:
        service = VoiceWarningService(config, db, dialer, reactor=reactor,
                                      clock=FixedTime(local(2026, 12, 1, 10, 5)))
        await settle(service)
        await defer.gatherResults([d for _, d in sim.answered_calls])
    finally:
        await dialer.stop()
        sim.close()
        await port.stopListening()
    assert states(store) == {ANSWERS: ("called", 1)}
    assert ("number", "1500") in heard(results[0])
    (sms,) = outbox_rows(store)
    assert sms["dedupe_key"] == f"expiry-copy:{warning['id']}"
