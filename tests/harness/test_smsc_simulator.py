"""The SMSC simulator itself: binds, records, id styles, knobs, and the standalone process."""

from __future__ import annotations

import os
import re
import sys

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints, protocol, reactor

from sms.pdu import (
    ESME_RBINDFAIL,
    ESME_RINVBNDSTS,
    ESME_RTHROTTLED,
    PduReader,
    decode_pdu,
    encode_pdu,
)
from sms.session import ESMEService
from tests.sms.conftest import Cfg, sleep

MSISDN = "13912345678"


class RawESME(protocol.Protocol):
    """A bare SMPP client: the test decides every PDU."""

    def __init__(self) -> None:
        self.reader = PduReader()
        self.seq = 0
        self.waiting: dict[int, defer.Deferred] = {}
        self.requests: list = []  # requests from the SMSC, answered with status 0

    def dataReceived(self, data: bytes) -> None:
        for frame in self.reader.feed(data):
            pdu = decode_pdu(frame)
            if pdu.is_response:
                self.waiting.pop(pdu.sequence).callback(pdu)
            else:
                self.requests.append(pdu)
                self.transport.write(encode_pdu(pdu.command + "_resp", pdu.sequence))

    def request(self, command: str, **fields) -> defer.Deferred:
        self.seq += 1
        d = self.waiting[self.seq] = defer.Deferred()
        self.transport.write(encode_pdu(command, self.seq, **fields))
        return d


@pytest.fixture
def raw(sim):
    clients: list[RawESME] = []

    async def connect() -> RawESME:
        ep = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", sim.port)
        client = await endpoints.connectProtocol(ep, RawESME())
        clients.append(client)
        return client

    yield connect
    for c in clients:
        c.transport.loseConnection()


def submit_fields(text: bytes = b"hello", **kw):
    return dict(source_addr="10086", destination_addr=MSISDN, short_message=text,
                registered_delivery=1, **kw)


@pytest_twisted.ensureDeferred
async def test_bind_checks_credentials_and_modes(sim, raw):
    c = await raw()
    resp = await c.request("bind_transceiver", system_id="loyalty", password="wrong")
    assert resp.status == ESME_RBINDFAIL
    resp = await c.request("bind_receiver", system_id="loyalty", password="secret")
    assert resp.status == 0 and resp.get("system_id") == "SIMSMSC"
    resp = await c.request("submit_sm", **submit_fields())
    assert resp.status == ESME_RINVBNDSTS  # a receiver may not submit

    tx = await raw()
    assert (await tx.request("submit_sm", **submit_fields())).status == ESME_RINVBNDSTS
    await tx.request("bind_transmitter", system_id="loyalty", password="secret")
    resp = await tx.request("submit_sm", **submit_fields())
    assert resp.status == 0 and resp.get("message_id")
    await sim.wait_for(lambda: c.requests)  # the receipt goes to the receiver session
    receipt = c.requests[0]
    assert receipt.get("esm_class") == 4
    assert receipt.get("receipted_message_id") == resp.get("message_id")
    assert b"stat:DELIVRD err:000" in receipt.get("short_message")
    assert sim.bind_attempts == 3 and sim.binds == 2


@pytest_twisted.ensureDeferred
async def test_receipts_wait_for_a_receiver(sim, raw):
    tx = await raw()
    await tx.request("bind_transmitter", system_id="loyalty", password="secret")
    await tx.request("submit_sm", **submit_fields())
    await sleep(0.05)
    assert sim.receipts_sent == []
    rx = await raw()
    await rx.request("bind_receiver", system_id="loyalty", password="secret")
    await sim.wait_for(lambda: rx.requests)
    assert sim.receipts_sent[0][1] == 0


@pytest.mark.parametrize("style,pattern", [("hex", r"[0-9a-f]+"), ("HEX", r"[0-9A-F]+"),
                                           ("dec", r"[0-9]+")])
@pytest_twisted.ensureDeferred
async def test_message_id_styles(sim, raw, style, pattern):
    sim.id_style, sim.receipt_id_style = style, "zeros"
    c = await raw()
    await c.request("bind_transceiver", system_id="loyalty", password="secret")
    mid = (await c.request("submit_sm", **submit_fields())).get("message_id")
    assert re.fullmatch(pattern, mid)
    await sim.wait_for(lambda: c.requests)
    text = c.requests[0].get("short_message").decode()
    assert f"id:{mid.rjust(12, '0')} " in text


@pytest_twisted.ensureDeferred
async def test_records_and_reassembles_mt(sim, raw):
    c = await raw()
    await c.request("bind_transceiver", system_id="loyalty", password="secret")
    ucs = "积分".encode("utf-16-be")
    await c.request("submit_sm", **submit_fields(b"\x05\x00\x03\x07\x02\x02" + ucs[2:],
                                                 esm_class=0x40, data_coding=8))
    assert sim.messages == []  # part 2 alone is not a message yet
    await c.request("submit_sm", **submit_fields(b"\x05\x00\x03\x07\x02\x01" + ucs[:2],
                                                 esm_class=0x40, data_coding=8))
    assert sim.texts_to(MSISDN) == ["积分"]
    assert [s.udh for s in sim.submits] == [b"\x05\x00\x03\x07\x02\x02",
                                            b"\x05\x00\x03\x07\x02\x01"]
    assert sim.messages[0].parts == 2


@pytest_twisted.ensureDeferred
async def test_knobs_fraction_delay_enquire_link(sim, raw):
    c = await raw()
    await c.request("bind_transceiver", system_id="loyalty", password="secret")
    sim.throttle_fraction = 1.0
    assert (await c.request("submit_sm", **submit_fields())).status == ESME_RTHROTTLED
    sim.throttle_fraction = 0.0
    sim.response_delay_s = 0.2
    start = reactor.seconds()
    assert (await c.request("submit_sm", **submit_fields())).status == 0
    assert reactor.seconds() - start >= 0.19
    assert await sim.send_enquire_link() == 0
    assert sim.received.count("enquire_link_resp") == 1


@pytest_twisted.ensureDeferred
async def test_inject_mo_needs_a_bound_receiver():
    from harness.smsc_simulator import SMSCSimulator

    with pytest.raises(RuntimeError):
        await SMSCSimulator().inject_mo(MSISDN, "JF")


@pytest_twisted.ensureDeferred
async def test_periodic_enquire_link_and_refused_binds_back_off(inbox):
    from harness.smsc_simulator import SMSCSimulator

    sim = SMSCSimulator("loyalty", "secret", enquire_link_s=0.05)
    sim.listen(0)
    sim.refuse_binds(n=2)
    ep = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", sim.port)
    esme = ESMEService(Cfg(reconnect_min_s=0.1, reconnect_max_s=1.0), ep,
                       inbox.on_deliver, inbox.on_receipt, clock=reactor)
    start = reactor.seconds()
    esme.startService()
    try:
        await esme.whenBound()
        assert sim.bind_attempts == 3 and sim.binds == 1
        assert reactor.seconds() - start >= 0.1 + 0.2  # backoff: 0.1 s, then 0.2 s
        assert esme.failed_attempts == 0
        await sim.wait_for(lambda: sim.received.count("enquire_link_resp") >= 3)
    finally:
        await esme.stopService()
        await sim.stop()


@pytest_twisted.ensureDeferred
async def test_standalone_process(tmp_path):
    """``python -m harness.smsc_simulator`` serves a real ESME and logs what it receives."""
    out = tmp_path / "sim.log"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = protocol.ProcessProtocol()
    ended = defer.Deferred()
    proc.processEnded = lambda reason: ended.callback(None)
    stdout = open(out, "wb")
    transport = reactor.spawnProcess(
        proc, sys.executable, [sys.executable, "-m", "harness.smsc_simulator", "--port", "0",
                               "--receipt-delay", "0"],
        env={**os.environ, "PYTHONPATH": root}, path=root,
        childFDs={0: "w", 1: stdout.fileno(), 2: stdout.fileno()},
    )
    try:
        port = None
        for _ in range(200):
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", out.read_text())
            if m:
                port = int(m.group(1))
                break
            await sleep(0.05)
        assert port, out.read_text()
        from tests.sms.conftest import Inbox

        inbox = Inbox()
        ep = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        esme = ESMEService(Cfg(), ep, inbox.on_deliver, inbox.on_receipt, clock=reactor)
        esme.startService()
        await esme.whenBound()
        await esme.submit(MSISDN, "hello from the test")
        for _ in range(100):
            if inbox.receipts:
                break
            await sleep(0.05)
        await esme.stopService()
        assert inbox.receipts and inbox.receipts[0].delivered
        log = out.read_text()
        assert "submit_sm" in log and "hello from the test" in log
        assert MSISDN not in log and "139*****678" not in log and "139****5678" in log
        assert "secret" not in log
    finally:
        transport.signalProcess("TERM")
        await ended
        stdout.close()


@pytest_twisted.ensureDeferred
async def test_two_accounts_bound_at_once_share_the_mo_and_one_can_be_held(sim, raw):
    """One bind per server process: MO dealt out in turn, submits counted per system id,
    and one account's submits left unanswered (a process whose SMSC link hangs)."""
    sim.accounts["loyalty2"] = "other"
    sim.spread_mo = True
    one, two = await raw(), await raw()
    assert (await one.request("bind_transceiver", system_id="loyalty",
                              password="secret")).status == 0
    assert (await two.request("bind_transceiver", system_id="loyalty2",
                              password="secret")).status == ESME_RBINDFAIL  # its own password
    assert (await two.request("bind_transceiver", system_id="loyalty2",
                              password="other")).status == 0
    statuses = [await sim.inject_mo(MSISDN, f"JF {i}") for i in range(6)]
    assert statuses == [0] * 6
    assert len(one.requests) == len(two.requests) == 3
    sim.mo_to = "loyalty2"
    assert [await sim.inject_mo(MSISDN, f"DJ {i}") for i in range(2)] == [0, 0]
    assert (len(one.requests), len(two.requests)) == (3, 5)

    assert (await one.request("submit_sm", **submit_fields())).status == 0
    sim.hold_submits_from.add("loyalty2")
    held = two.request("submit_sm", **submit_fields(b"held"))
    await sleep(0.1)
    assert not held.called and sim.texts_to(MSISDN) == ["hello"]
    assert sim.accepted_from == {"loyalty": 1}
