"""The per-connection SMPP server protocol of the SMSC simulator (see harness/smsc_simulator.py)."""

from __future__ import annotations

import random
import struct
from typing import TYPE_CHECKING, Any

from twisted.internet import defer, error, protocol, task
from twisted.logger import Logger
from twisted.python.failure import Failure

from core.domain import mask_msisdn
from sms.pdu import (
    ESME_RALYBND,
    ESME_RINVBNDSTS,
    ESME_RINVCMDID,
    ESME_RINVCMDLEN,
    BadFrame,
    DecodeError,
    Pdu,
    PduReader,
    decode_pdu,
    encode_pdu,
    generic_nack,
)

if TYPE_CHECKING:
    from harness.smsc_simulator import SMSCSimulator

log = Logger()
_BIND_KIND = {"bind_transceiver": "transceiver", "bind_transmitter": "transmitter",
              "bind_receiver": "receiver"}


class SMSCProtocol(protocol.Protocol):
    def __init__(self, sim: SMSCSimulator):
        self.sim = sim
        self.bound_as: str | None = None
        self.system_id: str | None = None  # as bound
        self.closed = False
        self.dropped = False  # input ignored from now on (simulated drop)
        self.in_flight = 0  # submit_sm received and not yet answered
        self._reader = PduReader()
        self._seq = random.randrange(1, 0x7FFF)
        self._outstanding: dict[int, defer.Deferred] = {}
        self._closed_waiters: list[defer.Deferred] = []
        self._enquire: task.LoopingCall | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def connectionMade(self) -> None:
        self.sim.connections.append(self)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.closed = True
        if self in self.sim.connections:
            self.sim.connections.remove(self)
        if self in self.sim.sessions:
            self.sim.sessions.remove(self)
        if self._enquire is not None and self._enquire.running:
            self._enquire.stop()
        pending, self._outstanding = self._outstanding, {}
        for d in pending.values():
            d.errback(error.ConnectionLost("ESME connection closed"))
        waiters, self._closed_waiters = self._closed_waiters, []
        for d in waiters:
            d.callback(None)

    def when_closed(self) -> defer.Deferred:
        if self.closed:
            return defer.succeed(None)
        d: defer.Deferred = defer.Deferred()
        self._closed_waiters.append(d)
        return d

    @property
    def can_receive(self) -> bool:
        return not self.closed and self.bound_as in ("transceiver", "receiver")

    def drop(self) -> None:
        """Simulated link loss: flush what was written, ignore any further input, close."""
        self.dropped = True
        self.transport.loseConnection()

    # -- input -------------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if not self.closed:
            self.transport.write(data)

    def dataReceived(self, data: bytes) -> None:
        if self.sim.mute:
            return
        for frame in self._reader.feed(data):
            if self.dropped or self.closed:
                return
            if isinstance(frame, BadFrame):
                self._write(generic_nack(frame.sequence, ESME_RINVCMDLEN))
                self.transport.loseConnection()
                return
            try:
                pdu = decode_pdu(frame)
            except DecodeError as exc:
                log.warn("simulator: undecodable PDU from ESME: {err}", err=str(exc))
                if exc.is_request:
                    self._write(generic_nack(exc.sequence, exc.status))
                continue
            self.sim.received.append(pdu.command)
            if self.sim.log_pdus:
                log.info("<- {cmd} seq={seq} status=0x{status:08x} to={dst}", cmd=pdu.command,
                         seq=pdu.sequence, status=pdu.status,
                         dst=mask_msisdn(pdu.get("destination_addr")))
            if pdu.is_response:
                self._on_response(pdu)
            else:
                self._on_request(pdu)

    def _on_response(self, pdu: Pdu) -> None:
        if pdu.command == "generic_nack":
            self.sim.nacks_received.append(pdu.status)
        d = self._outstanding.pop(pdu.sequence, None)
        if d is not None:
            d.callback(pdu.status)

    def _on_request(self, pdu: Pdu) -> None:
        cmd, seq = pdu.command, pdu.sequence
        if cmd in _BIND_KIND:
            self._on_bind(pdu)
        elif cmd == "enquire_link":
            self.sim.enquire_links_received += 1
            self._write(encode_pdu("enquire_link_resp", seq))
        elif cmd == "unbind":
            self._write(encode_pdu("unbind_resp", seq))
            self.bound_as = None
            self.transport.loseConnection()
        elif self.bound_as is None:
            self._write(encode_pdu(cmd + "_resp", seq, ESME_RINVBNDSTS)
                        if cmd in ("submit_sm", "query_sm", "data_sm")
                        else generic_nack(seq, ESME_RINVBNDSTS))
        elif cmd == "submit_sm":
            if self.bound_as == "receiver":
                self._write(encode_pdu("submit_sm_resp", seq, ESME_RINVBNDSTS))
            else:
                self._on_submit(pdu)
        else:
            self._write(generic_nack(seq, ESME_RINVCMDID))

    def _on_bind(self, pdu: Pdu) -> None:
        resp = pdu.command + "_resp"
        if self.bound_as is not None:
            self._write(encode_pdu(resp, pdu.sequence, ESME_RALYBND))
            return
        status = self.sim.check_bind(pdu.get("system_id", ""), pdu.get("password", ""))
        self._write(encode_pdu(resp, pdu.sequence, status, system_id="SIMSMSC",
                               sc_interface_version=0x34))
        if status:
            log.info("simulator: refused bind of {sid!r}", sid=pdu.get("system_id"))
            return
        self.bound_as = _BIND_KIND[pdu.command]
        self.system_id = pdu.get("system_id", "")
        log.info("simulator: {sid!r} bound as {kind}", sid=pdu.get("system_id"),
                 kind=self.bound_as)
        self.sim.on_bound(self)
        if self.sim.enquire_link_s:
            self._enquire = task.LoopingCall(self._send_enquire)
            self._enquire.clock = self.sim.clock
            self._enquire.start(self.sim.enquire_link_s, now=False)

    def _send_enquire(self) -> None:
        self.request("enquire_link").addErrback(lambda f: None)

    # -- submit_sm ---------------------------------------------------------------------------

    def _on_submit(self, pdu: Pdu) -> None:
        sim = self.sim
        sim.submit_times.append(sim.clock.seconds())
        self.in_flight += 1
        sim.max_outstanding = max(sim.max_outstanding, self.in_flight)
        if sim.never_respond or self.system_id in sim.hold_submits_from:
            return
        status = sim.submit_status()
        if sim.response_delay_s > 0:
            sim.clock.callLater(sim.response_delay_s, self._answer_submit, pdu, status)
        else:
            self._answer_submit(pdu, status)

    def _answer_submit(self, pdu: Pdu, status: int) -> None:
        if self.closed or self.dropped:
            return
        sim = self.sim
        self.in_flight -= 1
        sim.submit_statuses.append(status)
        if status:
            self._write(encode_pdu("submit_sm_resp", pdu.sequence, status))
            return
        message_id = sim.new_message_id()
        rec = sim.accept(dict(pdu.params), message_id)
        sim.accepted_from[self.system_id or ""] += 1
        wants_receipt = sim.receipts and rec.registered_delivery & 0x03
        if wants_receipt and sim.receipt_before_resp:
            sim.send_receipt(rec, self)
        self._write(encode_pdu("submit_sm_resp", pdu.sequence, message_id=message_id))
        if wants_receipt and not sim.receipt_before_resp:
            sim.clock.callLater(sim.receipt_delay_s, sim.send_receipt, rec, self)
        if sim.take_drop():
            log.info("simulator: dropping the connection as asked")
            self.drop()

    # -- output requests ---------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq = self._seq + 1 if self._seq < 0x7FFFFFFF else 1
        return self._seq

    def request(self, command: str, **fields: Any) -> defer.Deferred:
        """Send a request; fires with the response's command_status."""
        if self.closed:
            return defer.fail(error.ConnectionLost("ESME connection closed"))
        seq = self._next_seq()
        d: defer.Deferred = defer.Deferred()
        self._outstanding[seq] = d
        self._write(encode_pdu(command, seq, **fields))
        return d

    def send_deliver(self, fields: dict[str, Any]) -> defer.Deferred:
        return self.request("deliver_sm", **fields)

    def send_garbage(self, kind: str) -> defer.Deferred:
        seq = self._next_seq()
        d: defer.Deferred = defer.Deferred()
        self._outstanding[seq] = d
        if kind == "length":
            data = struct.pack(">LLLL", 8, 0x00000005, 0, seq)
        elif kind == "body":
            good = encode_pdu("deliver_sm", seq, source_addr="1", destination_addr="2",
                              short_message=b"hello")
            data = struct.pack(">L", len(good) - 3) + good[4:-3]  # sm_length says 5, 2 left
        else:
            data = struct.pack(">LLLL", 16, 0x0000FFFF, 0, seq)
        self._write(data)
        return d.addErrback(lambda f: None)
