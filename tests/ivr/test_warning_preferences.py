"""A member switched to voice warnings (as ops or the IVR menu would) gets a warning call from
the next warnings run, over the AMI simulator, and no SMS warning."""

from __future__ import annotations

from datetime import date

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from core.preferences import set_preferences
from harness.ami_simulator import AMISimulator
from ivr.ami import AMIDialer
from ivr.server import fastagi_endpoint, fastagi_service
from ivr.voice_warnings import VoiceWarningService
from tests.core.jobs.conftest import add_lot, add_members, drive, local, outbox_rows
from tests.ivr.hotline_kit import heard, prompt_text_from_manifest
from tests.ivr.test_warning_dialplan import SECRET, USER, FixedTime, db  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pyst2

MEMBER = "13900000043"


@pytest_twisted.ensureDeferred
async def test_switched_to_voice_gets_a_call_and_no_sms(store, rules, config, db):  # noqa: F811
    add_members(store, MEMBER, language="en", channel="sms")
    add_lot(store, rules, MEMBER, 700, earned_on=date(2024, 1, 5))
    with store.unit_of_work() as uow:
        prefs = set_preferences(uow, rules, MEMBER, local(2026, 11, 30), warning_channel="voice")
    assert prefs.warning_channel == "voice" and prefs.warnings_on
    result = drive(store, rules, config, "expiry-warnings", local(2026, 12, 1, 10, 0))
    assert result.counts.get("voice") == 1
    assert outbox_rows(store, msisdn=MEMBER) == []

    cfg = config.replace("fastagi", host="127.0.0.1", port=0)
    fastagi = fastagi_service(cfg, db, None, reactor, fastagi_endpoint(reactor, cfg.fastagi))
    fastagi.startService()
    sim = AMISimulator(USER, SECRET, originate_delay=0.02,
                       fastagi=("127.0.0.1", fastagi.port.getHost().port),
                       caller_keys={MEMBER: "T"})
    sim.dialplan.prompt_text = prompt_text_from_manifest()
    port = sim.listen(0)
    ami = config.ami
    dialer = AMIDialer("127.0.0.1", port.getHost().port, USER, SECRET,
                       caller_id=ami.caller_id, channel_template=ami.channel_template,
                       context=ami.context, exten=ami.exten, priority=ami.priority,
                       action_timeout_s=2, reactor=reactor)
    dialer.start()
    try:
        service = VoiceWarningService(config, db, dialer, reactor=reactor,
                                      clock=FixedTime(local(2026, 12, 1, 10, 5)))
        await service.poll()
        while service.in_flight:
            await defer.DeferredList(list(service.in_flight.values()))
        (legs,) = await defer.gatherResults([d for _, d in sim.answered_calls])
        await fastagi.recorder.drain()
    finally:
        await dialer.stop()
        sim.close()
        await port.stopListening()
        await fastagi.stopService()

    (originate,) = sim.actions_named("Originate")
    assert MEMBER in originate.get("Channel", "")
    assert "#700" in heard(legs[0])  # the call told her how many points lapse
    assert [r for r in outbox_rows(store, msisdn=MEMBER) if r["kind"] != "reply"] == []
