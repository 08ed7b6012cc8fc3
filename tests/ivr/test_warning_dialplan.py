"""The outbound warning call on the sample dialplan: the Originate enters the context that
``config/extensions.conf`` ships, and the AMI simulator follows that context over real TCP
(warning AGI, then the hotline for the member who pressed 1), with a call record per leg."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from core.config import ConfigError, load_config
from harness.ami_simulator import AMISimulator
from ivr.ami import AMIDialer
from ivr.server import fastagi_endpoint, fastagi_service
from ivr.voice_warnings import VoiceWarningService
from tests.core.jobs.conftest import add_lot, add_members, drive, local, warning_rows
from tests.ivr.hotline_kit import FixedTime, heard, prompt_text_from_manifest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pyst2

EXTENSIONS_CONF = Path(__file__).resolve().parents[2] / "config" / "extensions.conf"
USER, SECRET = "loyalty", "s3cret"
MEMBER = "13900000042"


def dialplan() -> dict[str, list[tuple[str, str, str]]]:
    """``config/extensions.conf`` as context -> [(exten, priority or label, application)]."""
    contexts: dict[str, list[tuple[str, str, str]]] = {}
    current, exten, priority = None, None, 0
    for raw in EXTENSIONS_CONF.read_text(encoding="utf-8").splitlines():
        line = raw.split(";", 1)[0].strip()
        if m := re.fullmatch(r"\[([^\]]+)\]", line):
            current = m.group(1)
            contexts[current] = []
        elif m := re.fullmatch(r"exten\s*=>\s*([^,]+),(\d+),(.*)", line):
            exten, priority = m.group(1), int(m.group(2))
            contexts[current].append((exten, str(priority), m.group(3)))
        elif m := re.fullmatch(r"same\s*=>\s*n(?:\((\w+)\))?,(.*)", line):
            priority += 1
            contexts[current].append((exten, m.group(1) or str(priority), m.group(2)))
    return contexts


def test_the_originate_enters_the_sample_warning_context(config):
    plan = dialplan()
    ami = config.ami
    steps = plan[ami.context]
    entry = [app for ext, prio, app in steps if (ext, prio) == (ami.exten, str(ami.priority))]
    assert entry, f"no {ami.exten},{ami.priority} in [{ami.context}]"
    apps = [app for _, _, app in steps]
    assert any(re.search(r"AGI\(.*/expiry-warning\)", a) for a in apps)
    hotline = [app for _, label, app in steps if label == "hotline"]
    assert hotline and "LOYALTY_NEXT" in hotline[0]
    assert any(re.search(r"AGI\(.*/loyalty,\$\{LOYALTY_MSISDN\}\)", a) for a in apps)
    # the channel the dialer calls exists too
    channel_context = ami.channel_template.split("@", 1)[1]
    assert channel_context in plan


@pytest.mark.parametrize("key,value", [("context", "loyalty warning"), ("exten", ""),
                                       ("priority", "0")])
def test_bad_dialplan_place_is_refused(key, value):
    with pytest.raises(ConfigError, match=rf"ami\.{key}"):
        load_config(environ={f"LOYALTY_AMI_{key.upper()}": value})


@pytest_twisted.ensureDeferred
async def test_pressing_1_on_the_warning_call_reaches_the_hotline_menu(store, rules, config, db):
    add_members(store, MEMBER, language="en", channel="voice")
    add_lot(store, rules, MEMBER, 700, earned_on=date(2024, 1, 5))
    drive(store, rules, config, "expiry-warnings", local(2026, 12, 1, 10, 0))
    assert len(warning_rows(store)) == 1

    sim, legs = await place_warning_call(config, db, {MEMBER: "1" "2T"})  # 1: menu; 2: balance

    (originate,) = sim.actions_named("Originate")
    assert (originate.get("Context"), originate.get("Exten"), originate.get("Priority")) == (
        "loyalty-warning", "s", "1")
    assert originate.get("Application") is None
    warning, hotline = legs
    assert warning.variables_set["LOYALTY_NEXT"] == "hotline"
    tokens = heard(hotline)
    # the member's own menu, in English, without being asked who is calling
    assert "auth_enter_number" not in tokens and "auth_enter_pin" not in tokens
    assert tokens[tokens.index("welcome"):][:3] == ["welcome", "k:2", "bal_is"]
    assert "#700" in tokens
    with store.unit_of_work(write=False) as uow:
        from sqlalchemy import select

        from core.store.tables import calls
        records = [dict(r._mapping) for r in uow.conn.execute(select(calls))]
    by_script = {r["script"]: r for r in records}
    assert set(by_script) == {"expiry-warning", "loyalty"}
    assert {r["uniqueid"] for r in records} == {warning.uniqueid}
    assert by_script["expiry-warning"]["msisdn_masked"] == "139****0042"
    assert by_script["expiry-warning"]["outcome"] == "hotline"
    assert by_script["loyalty"]["msisdn_masked"] == "139****0042"


async def place_warning_call(config, db, caller_keys: dict[str, str]):
    """One run of the voice warning dispatcher (at 10:05 on 1 Dec, local) through the real AMI
    dialer, the AMI simulator following the sample dialplan, and the real FastAGI service.
    Returns the simulator and the legs of the answered call."""
    cfg = config.replace("fastagi", host="127.0.0.1", port=0)
    fastagi = fastagi_service(cfg, db, None, reactor, fastagi_endpoint(reactor, cfg.fastagi))
    fastagi.startService()
    sim = AMISimulator(USER, SECRET, originate_delay=0.02,
                       fastagi=("127.0.0.1", fastagi.port.getHost().port),
                       caller_keys=caller_keys)
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
    return sim, legs
