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
from harness.simulator import simulate_call
from harness.smsc_simulator import SMSCSimulator

TAC = Path(__file__).resolve().parent.parent / "twistd.tac"
MEMBER = "13800138000"
PIN = "97531"  # distinctive, so finding it in a log line is no accident


async def http_get(port: int, path: str) -> tuple[int, str]:
    response = await Agent(reactor).request(b"GET", f"http://127.0.0.1:{port}{path}".encode())
    return response.code, (await readBody(response)).decode()


class RunningServer:
    """The composed server on free ports with an SMSC simulator, demo data and ``PIN``."""

    def __init__(self, database_url, config, rules, now) -> None:
        store = Store(database_url)
        with store.unit_of_work() as uow:
            load_demo(uow, rules, now)
        with store.unit_of_work() as uow:
            set_pin(uow, rules, MEMBER, PIN, now)
        store.dispose()
        self.sim = SMSCSimulator("loyalty", "secret")
        self.sim.listen(0)
        self.config = (config.replace("database", url=database_url)
                       .replace("fastagi", port=0).replace("ops", port=0)
                       .replace("smpp", port=self.sim.port, reconnect_min_s=0.05)
                       .replace("jobs", enabled=False))
        self.top = runpy.run_path(str(TAC), run_name="loyalty_tac")["build_server"](
            self.config, reactor)

    async def __aenter__(self) -> RunningServer:
        self.top.startService()
        self.agi_port = (await self.top.fastagi.whenListening()).getHost().port
        self.ops_port = (await self.top.ops.whenListening()).getHost().port
        await self.top.sms.esme.whenBound()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.top.stopService()
        await self.sim.stop()

    async def sms(self, text: str) -> str:
        before = len(self.sim.texts_to(MEMBER))
        assert await self.sim.inject_mo(MEMBER, text) == 0
        await self.sim.wait_for(lambda: len(self.sim.texts_to(MEMBER)) > before, timeout=10)
        return self.sim.texts_to(MEMBER)[-1]


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
    lines: list[str] = []

    def capture(event):
        lines.append(formatEvent(event) + " " + repr({k: v for k, v in event.items()
                                                       if not k.startswith("log_")}))

    globalLogPublisher.addObserver(capture)
    try:
        async with RunningServer(database_url, config, rules, now) as server:
            code, health = await http_get(server.ops_port, "/health")
            assert code == 200, health
            _, before = await http_get(server.ops_port, "/metrics")

            call = await simulate_call("127.0.0.1", server.agi_port, callerid=f"+86{MEMBER}",
                                       keys="2")
            heard = call.render()
            assert "bal_is" in heard and "9300" in heard.replace(",", ""), heard

            # A redemption keys the PIN in: A01 at the Gold price.
            redeem = await simulate_call("127.0.0.1", server.agi_port, callerid=MEMBER,
                                         keys=f"411{PIN}#1")
            assert "redeem_accepted" in redeem.render(), redeem.render()

            assert "8400" in await server.sms("JF")  # 9,300 less the 900 just redeemed

            await server.top.sms.refresh_metrics()
            _, after = await http_get(server.ops_port, "/metrics")
            assert sample(after, "loyalty_calls_total", script="loyalty") == \
                sample(before, "loyalty_calls_total", script="loyalty") + 2
            assert sample(after, "loyalty_redemptions_total", channel="ivr") == \
                sample(before, "loyalty_redemptions_total", channel="ivr") + 1
            assert sample(after, "loyalty_agi_think_seconds_count") > \
                sample(before, "loyalty_agi_think_seconds_count")
            assert sample(after, "loyalty_sms_mo_total") == \
                sample(before, "loyalty_sms_mo_total") + 1
            assert sample(after, "loyalty_sms_mt_total") > sample(before, "loyalty_sms_mt_total")
    finally:
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


@pytest_twisted.ensureDeferred
async def test_guessing_across_sms_and_ivr_locks_the_pin_for_both(database_url, config, rules,
                                                                   now):
    async with RunningServer(database_url, config, rules, now) as server:
        quote = await server.sms("DH A01")
        assert "A01" in quote or "900" in quote, quote
        for wrong in ("000000", "000001"):  # two wrong one-time codes by SMS...
            await server.sms(wrong)
        # ...and one wrong PIN on the hotline: the third failure locks the PIN.
        call = await simulate_call("127.0.0.1", server.agi_port, callerid=MEMBER,
                                   keys="411" "11111#" "T")
        assert "auth_pin_locked" in call.render(), call.render()
        # Now even the right PIN is refused, by voice and by SMS code.
        call = await simulate_call("127.0.0.1", server.agi_port, callerid=MEMBER,
                                   keys=f"411{PIN}#1")
        heard = call.render()
        assert "auth_pin_locked" in heard and "redeem_accepted" not in heard, heard
    with Store(database_url).unit_of_work() as uow:
        assert uow.orders.member_orders(MEMBER, 10) and all(
            o.channel != "ivr" for o in uow.orders.member_orders(MEMBER, 10))
