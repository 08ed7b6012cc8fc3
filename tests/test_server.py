"""The whole server as twistd builds it: a simulated call and an SMS go through, the ops
endpoint shows them, and no log line carries a full phone number."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.logger import formatEvent, globalLogPublisher
from twisted.web.client import Agent, readBody

from core.accounts import set_pin
from core.demo import load_demo
from core.store import Store
from ivr.simulator import simulate_call
from sms.smsc_simulator import SMSCSimulator

TAC = Path(__file__).resolve().parent.parent / "twistd.tac"
MEMBER = "13800138000"
PIN = "97531"  # distinctive, so finding it in a log line is no accident


async def http_get(port: int, path: str) -> tuple[int, str]:
    response = await Agent(reactor).request(b"GET", f"http://127.0.0.1:{port}{path}".encode())
    return response.code, (await readBody(response)).decode()


def sample(metrics_text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(metrics_text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


@pytest.mark.filterwarnings("ignore:Using readBody:DeprecationWarning")
@pytest_twisted.ensureDeferred
async def test_a_call_and_an_sms_through_the_composed_server(database_url, config, rules, now):
    store = Store(database_url)
    with store.unit_of_work() as uow:
        load_demo(uow, rules, now)
    with store.unit_of_work() as uow:
        set_pin(uow, rules, MEMBER, PIN, now)
    store.dispose()

    lines: list[str] = []

    def capture(event):
        lines.append(formatEvent(event) + " " + repr({k: v for k, v in event.items()
                                                       if not k.startswith("log_")}))

    globalLogPublisher.addObserver(capture)
    sim = SMSCSimulator("loyalty", "secret")
    sim.listen(0)
    cfg = (config.replace("database", url=database_url)
           .replace("fastagi", port=0).replace("ops", port=0)
           .replace("smpp", port=sim.port, reconnect_min_s=0.05)
           .replace("jobs", enabled=False))
    top = runpy.run_path(str(TAC), run_name="loyalty_tac")["build_server"](cfg, reactor)
    top.startService()
    try:
        agi_port = (await top.fastagi.listening).getHost().port
        ops_port = (await top.ops.whenListening()).getHost().port
        await top.sms.esme.whenBound()

        code, health = await http_get(ops_port, "/health")
        assert code == 200, health
        _, before = await http_get(ops_port, "/metrics")

        call = await simulate_call("127.0.0.1", agi_port, callerid=f"+86{MEMBER}", keys="2")
        heard = call.render()
        assert "bal_is" in heard and "9300" in heard.replace(",", ""), heard

        # A redemption keys the PIN in: A01 at the Gold price.
        redeem = await simulate_call("127.0.0.1", agi_port, callerid=MEMBER,
                                     keys=f"411{PIN}#1")
        assert "redeem_success" in redeem.render(), redeem.render()

        assert await sim.inject_mo(MEMBER, "JF") == 0
        await sim.wait_for(lambda: any("8400" in t for t in sim.texts_to(MEMBER)), timeout=10)
        assert "8400" in sim.texts_to(MEMBER)[-1]  # 9,300 less the 900 just redeemed

        await top.sms.refresh_metrics()
        _, after = await http_get(ops_port, "/metrics")
        assert sample(after, "loyalty_calls_total", script="loyalty") == \
            sample(before, "loyalty_calls_total", script="loyalty") + 2
        assert sample(after, "loyalty_redemptions_total", channel="ivr") == \
            sample(before, "loyalty_redemptions_total", channel="ivr") + 1
        assert sample(after, "loyalty_agi_think_seconds_count") > \
            sample(before, "loyalty_agi_think_seconds_count")
        assert sample(after, "loyalty_sms_mo_total") == sample(before, "loyalty_sms_mo_total") + 1
        assert sample(after, "loyalty_sms_mt_total") > sample(before, "loyalty_sms_mt_total")
    finally:
        await top.stopService()
        await sim.stop()
        globalLogPublisher.removeObserver(capture)

    assert lines, "the server logged nothing"
    leaked = [line for line in lines if MEMBER in line or MEMBER[3:] in line or PIN in line]
    assert not leaked, leaked[:3]


def test_the_tree_stops_the_database_only_after_the_channels_finished_stopping():
    from twisted.application.service import Service
    from twisted.internet import defer

    tree_class = runpy.run_path(str(TAC), run_name="loyalty_tac")["ServiceTree"]
    events: list[str] = []
    channel_done = defer.Deferred()

    class Database(Service):
        def stopService(self):
            events.append("database stop")
            return super().stopService()

    class Channel(Service):
        def stopService(self):
            events.append("channel stop begins")
            super().stopService()
            return channel_done.addCallback(lambda _: events.append("channel stop done"))

    tree = tree_class()
    Database().setServiceParent(tree)
    Channel().setServiceParent(tree)
    tree.startService()
    stopped = tree.stopService()
    assert events == ["channel stop begins"]
    channel_done.callback(None)
    assert events == ["channel stop begins", "channel stop done", "database stop"]
    assert stopped.called
