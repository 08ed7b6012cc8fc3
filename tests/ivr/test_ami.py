"""AMIDialer (pyst2 on its own thread) against the AMI simulator, over real TCP on 127.0.0.1."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import DeferredList, succeed
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.logger import formatEvent, globalLogPublisher

from harness.ami_simulator import AMISimulator, WireEntry
from ivr.ami import (
    AMIDialer,
    AMIDialerService,
    AMIError,
    OriginateResult,
    originate_result_from_event,
)

# pyst2 0.5.1 calls Thread.setDaemon / Event.isSet / currentThread (deprecated since 3.10).
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

USER, SECRET = "loyalty", "s3cret-Pa55"
NUMBER = "13812345678"


def sleep(seconds: float):
    return deferLater(reactor, seconds, lambda: None)


@pytest_twisted.async_yield_fixture
async def sim():
    simulator = AMISimulator(USER, SECRET, originate_delay=0.05)
    port = simulator.listen(0)
    simulator.port = port.getHost().port
    yield simulator
    simulator.close()
    await port.stopListening()


@pytest_twisted.async_yield_fixture
async def make_dialer():
    dialers = []

    def make(port: int, **kwargs) -> AMIDialer:
        kwargs.setdefault("caller_id", "10086")
        kwargs.setdefault("answer_timeout_s", 30)
        kwargs.setdefault("action_timeout_s", 2)
        username = kwargs.pop("username", USER)
        secret = kwargs.pop("secret", SECRET)
        dialer = AMIDialer("127.0.0.1", port, username, secret, reactor=reactor, **kwargs)
        dialer.start()
        dialers.append(dialer)
        return dialer

    yield make
    for dialer in dialers:
        await dialer.stop()


@pytest.fixture
def dialer(sim, make_dialer):
    return make_dialer(sim.port)


# -- login ------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_login_ok_then_originate(sim, dialer):
    result = await dialer.originate(NUMBER, {})

    assert result.answered
    logins = sim.actions_named("Login")
    assert len(logins) == 1
    assert logins[0].get("Username") == USER
    assert logins[0].get("Secret") == SECRET
    assert logins[0].get("Events") == "call"
    assert [a.name for a in sim.actions] == ["Login", "Originate"]


@pytest_twisted.ensureDeferred
async def test_login_refused(sim, make_dialer):
    dialer = make_dialer(sim.port, secret="wrong")

    with pytest.raises(AMIError) as info:
        await dialer.originate(NUMBER, {})

    assert "refused login for user 'loyalty': Authentication failed" in str(info.value)
    assert "wrong" not in str(info.value)
    assert not info.value.call_may_be_placed
    assert sim.actions_named("Originate") == []


@pytest_twisted.ensureDeferred
async def test_connection_refused(make_dialer):
    port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
    number = port.getHost().port
    await port.stopListening()
    dialer = make_dialer(number)

    with pytest.raises(AMIError, match=f"cannot connect to AMI at 127.0.0.1:{number}"):
        await dialer.originate(NUMBER, {})


@pytest_twisted.ensureDeferred
async def test_server_that_never_speaks_times_out(make_dialer):
    port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
    try:
        dialer = make_dialer(port.getHost().port, action_timeout_s=0.3)
        with pytest.raises(AMIError, match="sent no banner"):
            await dialer.originate(NUMBER, {})
    finally:
        await port.stopListening()


# -- originate on the wire ----------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_originate_fields_exactly_as_sent(sim, make_dialer):
    dialer = make_dialer(
        sim.port, caller_id='"Loyalty" <10086>', answer_timeout_s=25,
        context="loyalty-warning", exten="s", priority=1,
    )

    await dialer.originate(NUMBER, {"LOYALTY_MSISDN": NUMBER, "LOYALTY_WARNING_ID": "42"})

    (action,) = sim.actions_named("Originate")
    action_id = action.action_id
    assert action_id and action_id.startswith("loyalty-")
    assert list(action.headers) == [
        ("Action", "Originate"),
        ("ActionID", action_id),
        ("Channel", f"Local/{NUMBER}@from-loyalty"),
        ("Context", "loyalty-warning"),
        ("Exten", "s"),
        ("Priority", "1"),
        ("CallerID", '"Loyalty" <10086>'),
        ("Timeout", "25000"),
        ("Async", "true"),
        ("Variable", f"LOYALTY_MSISDN={NUMBER}"),
        ("Variable", "LOYALTY_WARNING_ID=42"),
    ]


@pytest_twisted.ensureDeferred
async def test_each_originate_has_its_own_action_id(sim, dialer):
    await dialer.originate(NUMBER, {})
    await dialer.originate("13900001111", {})

    ids = [a.action_id for a in sim.actions]
    assert len(ids) == len(set(ids)) == 4  # Login, Originate, Ping, Originate


@pytest.mark.parametrize(
    "outcome, answered, reason, text",
    [
        ("answered", True, 4, "answered"),
        ("no-answer", False, 3, "no-answer"),
        ("busy", False, 5, "busy"),
        ("congestion", False, 8, "congestion"),
        ("failed", False, 0, "failed"),
        ("hangup", False, 1, "hangup"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_outcomes_mapped(sim, dialer, outcome, answered, reason, text):
    sim.outcomes[NUMBER] = outcome

    result = await dialer.originate(NUMBER, {})

    assert isinstance(result, OriginateResult)
    assert (result.answered, result.reason, result.reason_text) == (answered, reason, text)
    if answered:
        assert result.uniqueid and result.channel.startswith(f"Local/{NUMBER}@from-loyalty-")
    else:
        assert result.uniqueid is None
        assert result.channel == f"Local/{NUMBER}@from-loyalty"


@pytest_twisted.ensureDeferred
async def test_matched_by_action_id_among_other_events(sim, dialer):
    # Before each real OriginateResponse the simulator sends a Newchannel, an OriginateResponse
    # for another ActionID and one without ActionID (both with the contrary outcome), a Hangup.
    sim.interleave_events = True
    sim.outcomes.update({NUMBER: "busy", "13900001111": "answered"})

    busy = await dialer.originate(NUMBER, {})
    answered = await dialer.originate("13900001111", {})

    assert (busy.answered, busy.reason_text) == (False, "busy")
    assert (answered.answered, answered.reason_text) == (True, "answered")
    ours = {a.action_id for a in sim.actions_named("Originate")}
    foreign = [e for e in sim.wire_log if e.kind == "event" and e.action_id not in ours]
    assert len(foreign) == 4  # the noise really went out


@pytest_twisted.ensureDeferred
async def test_two_sessions_each_take_their_own_response(sim, make_dialer):
    # Asterisk sends every OriginateResponse to every session reading "call" events.
    sim.outcomes.update({"13800000001": "busy", "13800000002": "answered"})
    sim.delays.update({"13800000001": 0.3, "13800000002": 0.1})
    first, second = make_dialer(sim.port), make_dialer(sim.port)

    results = await DeferredList(
        [first.originate("13800000001", {}), second.originate("13800000002", {})],
        fireOnOneErrback=True,
        consumeErrors=True,
    )

    (_, busy), (_, answered) = results
    assert busy.reason_text == "busy" and answered.reason_text == "answered"
    assert sim.open_connections == 2


@pytest_twisted.ensureDeferred
async def test_no_originate_response_times_out(sim, make_dialer):
    sim.outcomes[NUMBER] = "silent"
    dialer = make_dialer(sim.port, answer_timeout_s=0.3, response_margin_s=0.2)

    with pytest.raises(AMIError, match=r"no OriginateResponse within 0\.5s") as info:
        await dialer.originate(NUMBER, {})
    assert info.value.call_may_be_placed

    # the session is still good for the next call
    assert (await dialer.originate("13900001111", {})).answered
    assert len(sim.actions_named("Login")) == 1


@pytest_twisted.ensureDeferred
async def test_originate_refused_by_asterisk(sim, dialer):
    sim.outcomes[NUMBER] = "forbidden"

    with pytest.raises(AMIError, match="rejected Originate: .*System privilege") as info:
        await dialer.originate(NUMBER, {})
    assert not info.value.call_may_be_placed


@pytest_twisted.ensureDeferred
async def test_calls_ring_together_while_actions_go_one_at_a_time(sim, make_dialer):
    sim.originate_delay = 0.3  # each call rings for 0.3 s before its OriginateResponse
    dialer = make_dialer(sim.port, max_concurrent_calls=3)

    calls = [dialer.originate(f"1380000000{i}", {}) for i in range(1, 4)]
    results = [await d for d in calls]

    assert all(r.answered for r in results)
    first, second, third = (a.action_id for a in sim.actions_named("Originate"))
    assert [e for e in sim.wire_log if e.action_id in (first, second, third)] == [
        WireEntry("action", "Originate", first),
        WireEntry("action", "Originate", second),  # while the first one rings
        WireEntry("action", "Originate", third),
        WireEntry("event", "OriginateResponse", first),
        WireEntry("event", "OriginateResponse", second),
        WireEntry("event", "OriginateResponse", third),
    ]
    assert sim.max_in_flight == 3  # (the voice warning service keeps it within the limit)


@pytest_twisted.ensureDeferred
async def test_reconnects_after_the_server_dropped_the_connection(sim, dialer):
    assert (await dialer.originate(NUMBER, {})).answered
    await sim.drop_connections()

    assert (await dialer.originate(NUMBER, {})).answered

    assert sim.connections_made == 2
    assert len(sim.actions_named("Login")) == 2
    assert len(sim.actions_named("Originate")) == 2


@pytest_twisted.ensureDeferred
async def test_connection_lost_while_waiting(sim, dialer):
    sim.outcomes[NUMBER] = "silent"
    d = dialer.originate(NUMBER, {})
    while not sim.actions_named("Originate"):
        await sleep(0.02)
    await sim.drop_connections()

    with pytest.raises(AMIError, match="connection lost while waiting") as info:
        await d
    assert info.value.call_may_be_placed
    sim.outcomes[NUMBER] = "answered"
    assert (await dialer.originate(NUMBER, {})).answered


# -- lifecycle --------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_stop_logs_off_and_refuses_new_calls(sim, dialer):
    await dialer.originate(NUMBER, {})

    await dialer.stop()

    assert sim.actions[-1].name == "Logoff"
    while sim.open_connections:
        await sleep(0.01)
    with pytest.raises(AMIError, match="not running"):
        await dialer.originate(NUMBER, {})


@pytest_twisted.ensureDeferred
async def test_stop_while_waiting_fails_the_call_quickly(sim, make_dialer):
    sim.outcomes[NUMBER] = "silent"
    dialer = make_dialer(sim.port, answer_timeout_s=30)
    d = dialer.originate(NUMBER, {})
    while not sim.actions_named("Originate"):
        await sleep(0.02)
    started = reactor.seconds()

    await dialer.stop()

    with pytest.raises(AMIError, match="stopped while waiting"):
        await d
    assert reactor.seconds() - started < 5


@pytest_twisted.ensureDeferred
async def test_service_starts_and_stops_the_dialer(sim):
    dialer = AMIDialer("127.0.0.1", sim.port, USER, SECRET, caller_id="10086", reactor=reactor)
    service = AMIDialerService(dialer)

    service.startService()
    assert dialer.running
    assert (await dialer.originate(NUMBER, {})).answered
    await service.stopService()

    assert not dialer.running
    assert sim.actions[-1].name == "Logoff"


@pytest_twisted.ensureDeferred
async def test_answered_hook_gets_the_call(sim, dialer):
    seen = []
    sim.on_answered = lambda call: seen.append(call) or succeed("agi done")

    await dialer.originate(NUMBER, {"LOYALTY_WARNING_ID": "7"})

    (call,) = seen
    assert call.number == NUMBER
    assert call.application is None  # into the dialplan (see test_warning_dialplan.py)
    assert call.variables == {"LOYALTY_WARNING_ID": "7"}
    assert await sim.answered_calls[0][1] == "agi done"


# -- input checks, logs, helpers ----------------------------------------------------------------


def test_bad_arguments_are_refused_before_anything_is_sent():
    dialer = AMIDialer("127.0.0.1", 1, USER, SECRET, caller_id="10086", reactor=reactor)
    with pytest.raises(ValueError):
        dialer.originate("138\r\nAction: Hangup", {})
    with pytest.raises(ValueError):
        dialer.originate(NUMBER, {"BAD-NAME": "1"})
    with pytest.raises(ValueError):
        dialer.originate(NUMBER, {"X": "a,b"})
    with pytest.raises(ValueError):
        AMIDialer("h", 1, USER, SECRET, caller_id="1", channel_template="Local/x@y",
                  reactor=reactor)


@pytest_twisted.ensureDeferred
async def test_logs_mask_the_number_and_never_show_the_secret(sim, make_dialer):
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        dialer = make_dialer(sim.port)
        await dialer.originate(NUMBER, {"LOYALTY_MSISDN": NUMBER})
        refused = make_dialer(sim.port, secret=SECRET + "-old")
        with pytest.raises(AMIError):
            await refused.originate(NUMBER, {})
    finally:
        globalLogPublisher.removeObserver(events.append)

    ours = [e for e in events if e.get("log_namespace", "").startswith("ivr.ami")]
    text = "\n".join(formatEvent(e) + repr(e) for e in ours)
    assert "138****5678" in text
    assert NUMBER not in text
    assert SECRET not in text


def test_result_from_event_headers():
    result = originate_result_from_event(
        {"Response": "Failure", "Reason": "4", "Uniqueid": "<null>", "Channel": "Local/1@x"}
    )
    assert result == OriginateResult(False, 4, "failed", None, "Local/1@x")
    assert originate_result_from_event({"Response": "Failure", "Reason": "42"}).reason_text == (
        "failed"
    )
