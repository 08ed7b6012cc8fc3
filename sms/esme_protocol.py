"""SMPP 3.4 ESME session (bind_transceiver) as a Twisted protocol. Import from sms.session.

smpplib is only the PDU codec (see sms/pdu.py); windowing, timers, throttling, MO and
receipts are handled here.

Callback contracts (both may return a plain value or a Deferred):

* ``on_deliver(mo: MOMessage) -> int``: called once per deliver_sm/data_sm that is not a
  receipt. Return the command_status for the deliver_sm_resp, which is sent only after it
  fires: 0 once the message is durably stored; 0x58, 0x14 or 0x64 (ESME_RX_T_APPN) to make the
  SMSC redeliver later. None counts as 0. An exception / failed Deferred answers 0x64.
* ``on_receipt(receipt: DeliveryReceipt) -> int``: the same, for delivery receipts
  (esm_class & 0x3C == 0x04, or 0x20 intermediate notifications).

The window (``config.window``) limits outstanding submit_sm; enquire_link and unbind
bypass it.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from core.domain import mask_msisdn
from sms.encoding import Reassembler
from sms.esme_requests import RequestMixin, _Outstanding
from sms.esme_submit import SubmitMixin, _QueuedPart
from sms.esme_types import (
    BindFailed,
    DeliveryReceipt,
    MOMessage,
    TemporaryError,
    build_mo,
    build_receipt,
    is_receipt,
)
from sms.pdu import (
    ESME_RINVBNDSTS,
    ESME_RINVCMDID,
    ESME_RINVCMDLEN,
    ESME_ROK,
    ESME_RX_T_APPN,
    BadFrame,
    DecodeError,
    Pdu,
    PduReader,
    decode_pdu,
    encode_pdu,
    generic_nack,
)
from sms.session_settings import SessionSettings
from sms.smpp_ratelimit import AdaptiveRate

__all__ = ["ESMEFactory", "ESMEProtocol", "OnDeliver", "OnReceipt"]

OnDeliver = Callable[[MOMessage], Any]
OnReceipt = Callable[[DeliveryReceipt], Any]


def make_rate(config: SessionSettings) -> AdaptiveRate:
    return AdaptiveRate(config.max_submit_rate, burst=config.submit_burst,
                        pause_s=config.throttle_pause_s)


class ESMEProtocol(SubmitMixin, RequestMixin, protocol.Protocol):
    log = Logger()

    def __init__(
        self,
        config: SessionSettings,
        on_deliver: OnDeliver,
        on_receipt: OnReceipt,
        *,
        clock: IReactorTime,
        reassembler: Reassembler | None = None,
        rate: AdaptiveRate | None = None,
    ):
        self.config = config
        self.on_deliver = on_deliver
        self.on_receipt = on_receipt
        self.clock = clock
        self.reassembler = reassembler or Reassembler()
        self.state = "closed"  # closed -> binding -> bound -> unbinding -> closed
        self.was_bound = False
        self._bind_outcome: Any = None  # self once bound, or a Failure
        self._bound_waiters: list[defer.Deferred] = []
        self._closed_waiters: list[defer.Deferred] = []
        self._reader = PduReader()
        self._seq = random.randrange(1, 0x7FFF)
        self._ref = random.randrange(256)
        self._outstanding: dict[int, _Outstanding] = {}
        self._timeout_call: IDelayedCall | None = None  # at the earliest deadline
        self._wbuf: list[bytes] | None = None  # PDUs to write together (see dataReceived)
        self._queue: deque[_QueuedPart] = deque()
        self._in_flight = 0
        self._drain_waiters: list[defer.Deferred] = []
        self._timeouts_in_row = 0
        self._pump_call: IDelayedCall | None = None
        self._pumping = self._repump = False
        self._idle_call: IDelayedCall | None = None
        self._dead_call: IDelayedCall | None = None
        self.rate = rate or make_rate(config)
        self.trace = config.trace

    # -- connection lifecycle ----------------------------------------------------------------

    def connectionMade(self) -> None:
        self.state = "binding"
        cfg = self.config
        self._idle_call = self.clock.callLater(cfg.enquire_link_s, self._on_idle)
        self._dead_call = self.clock.callLater(cfg.dead_link_s, self._link_dead, "no traffic")
        self.log.info("connected to {peer}, binding as {system_id}",
                      peer=str(self.transport.getPeer()), system_id=cfg.system_id)
        self._request(
            "bind_transceiver",
            system_id=cfg.system_id, password=cfg.password, system_type=cfg.system_type or "",
            addr_ton=getattr(cfg, "addr_ton", 0), addr_npi=getattr(cfg, "addr_npi", 0),
            address_range=cfg.address_range or "",
        ).addBoth(self._bind_done)

    def _bind_done(self, result: Pdu | Failure) -> None:
        if isinstance(result, Failure):
            self.log.warn("bind got no answer: {why}", why=result.getErrorMessage())
            self._fire_bound(result)
            self._abort()
        elif result.status != ESME_ROK:
            self.log.error("bind refused: command_status 0x{status:08x}", status=result.status)
            self._fire_bound(Failure(BindFailed("bind refused", result.status)))
            self._lose_connection()
        else:
            self.state = "bound"
            self.was_bound = True
            self.log.info("bound to SMSC {smsc}", smsc=result.get("system_id", ""))
            self._fire_bound(self)
            self._pump()

    def _fire_bound(self, result: Any) -> None:
        if self._bind_outcome is not None:
            return
        self._bind_outcome = result
        waiters, self._bound_waiters = self._bound_waiters, []
        for d in waiters:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)

    def when_bound(self) -> defer.Deferred:
        """Fires with this protocol once bound, or fails (BindFailed, TemporaryError)."""
        if isinstance(self._bind_outcome, Failure):
            return defer.fail(self._bind_outcome)
        if self._bind_outcome is not None:
            return defer.succeed(self._bind_outcome)
        d: defer.Deferred = defer.Deferred()
        self._bound_waiters.append(d)
        return d

    @property
    def is_bound(self) -> bool:
        return self.state == "bound"

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.state = "closed"
        for call in (self._idle_call, self._dead_call, self._pump_call, self._timeout_call):
            if call is not None and call.active():
                call.cancel()
        lost = TemporaryError(f"connection lost: {reason.getErrorMessage()}")
        self._fire_bound(Failure(lost))
        self._fail_queue(lost)
        outstanding, self._outstanding = self._outstanding, {}
        for out in outstanding.values():
            self._resolve(out, Failure(lost))
        self.log.info("connection closed: {why}", why=reason.getErrorMessage())
        waiters, self._closed_waiters = self._closed_waiters, []
        for d in waiters:
            d.callback(None)

    def when_closed(self) -> defer.Deferred:
        if self.state == "closed" and self.transport is not None:
            return defer.succeed(None)
        d: defer.Deferred = defer.Deferred()
        self._closed_waiters.append(d)
        return d

    def _abort(self) -> None:
        if self.transport is not None and self.state != "closed":
            self._flush_writes()
            self.transport.abortConnection()

    def _lose_connection(self) -> None:
        self._flush_writes()
        self.transport.loseConnection()

    def _link_dead(self, why: str) -> None:
        self.log.warn("SMPP link considered dead ({why}); dropping it", why=why)
        self._abort()

    def unbind(self, timeout: float | None = None) -> defer.Deferred:
        """Clean shutdown: stop sending, wait (up to ``timeout``) for outstanding submits, send
        unbind, wait (up to ``timeout``) for unbind_resp, close. Fires when closed."""
        timeout = self.config.unbind_timeout_s if timeout is None else timeout
        closed = self.when_closed()
        if self.state == "closed":
            return closed
        if self.state != "bound":
            self._lose_connection()
            return closed
        self.state = "unbinding"
        self._fail_queue(TemporaryError("session is unbinding"))

        def send_unbind(_: Any = None) -> None:
            if self.state == "closed":
                return
            self._request("unbind", timeout=timeout).addBoth(
                lambda _: self._lose_connection())

        if self._in_flight:
            drained: defer.Deferred = defer.Deferred()
            self._drain_waiters.append(drained)
            timer = self.clock.callLater(timeout, lambda: drained.called or drained.callback(None))
            drained.addBoth(lambda _: timer.active() and timer.cancel())
            drained.addBoth(send_unbind)
        else:
            send_unbind()
        return closed

    # -- input -------------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        for call in (self._idle_call, self._dead_call):
            if call is not None and call.active():
                call.reset(self.config.enquire_link_s if call is self._idle_call
                           else self.config.dead_link_s)
        # The answers to one read go out in one write (a transport.write costs as much as
        # encoding a PDU); _flush_writes sends them before anything closes the connection.
        self._wbuf = []
        try:
            for frame in self._reader.feed(data):
                if self.state == "closed":
                    return
                if isinstance(frame, BadFrame):
                    self.log.warn("bad command_length {length}; nack and drop",
                                  length=frame.length)
                    self._write(generic_nack(frame.sequence, ESME_RINVCMDLEN))
                    self._lose_connection()
                    return
                try:
                    pdu = decode_pdu(frame)
                except DecodeError as exc:
                    self._undecodable(exc)
                    continue
                if pdu.command_id & 0x80000000:
                    self._on_response(pdu)
                else:
                    self._on_request(pdu)
        finally:
            self._flush_writes()
            self._wbuf = None

    def _undecodable(self, exc: DecodeError) -> None:
        self.log.warn("undecodable PDU seq={seq}: {err}", seq=exc.sequence, err=str(exc))
        if exc.is_request:
            self._write(generic_nack(exc.sequence, exc.status))
            return
        out = self._outstanding.pop(exc.sequence, None)
        if out is not None:  # a garbled answer to one of ours: its outcome is unknown
            self._resolve(out, Failure(TemporaryError(f"garbled {out.command} response",
                                                      exc.status)))

    def _on_response(self, pdu: Pdu) -> None:
        out = self._outstanding.pop(pdu.sequence, None)
        if out is None:
            self.log.info("late or unknown response {cmd} seq={seq}",
                          cmd=pdu.command, seq=pdu.sequence)
            return
        self._timeouts_in_row = 0
        self._resolve(out, pdu)

    def _on_request(self, pdu: Pdu) -> None:
        if pdu.command in ("deliver_sm", "data_sm"):
            self._on_deliver_pdu(pdu)
        elif pdu.command == "enquire_link":
            self._write(encode_pdu("enquire_link_resp", pdu.sequence))
        elif pdu.command == "unbind":
            self.log.info("SMSC asked to unbind")
            self._write(encode_pdu("unbind_resp", pdu.sequence))
            self.state = "unbinding"
            self._fail_queue(TemporaryError("SMSC unbound the session"))
            # Keep reading until submits already sent are answered (or a short deadline):
            # closing at once would lose a submit_sm_resp that follows the unbind, and the
            # outbox would resend a message the SMSC had accepted.
            if self._in_flight:
                drained: defer.Deferred = defer.Deferred()
                self._drain_waiters.append(drained)
                timer = self.clock.callLater(
                    min(self.config.response_timeout_s, 2.0),
                    lambda: drained.called or drained.callback(None))
                drained.addBoth(lambda _: timer.active() and timer.cancel())
                drained.addBoth(lambda _: self._lose_connection())
            else:
                self._lose_connection()
        elif pdu.command == "alert_notification":
            pass  # no response is defined for it
        else:
            self._write(generic_nack(pdu.sequence, ESME_RINVCMDID))

    def _on_deliver_pdu(self, pdu: Pdu) -> None:
        resp = pdu.command + "_resp"
        if self.state not in ("bound", "unbinding"):
            self._write(encode_pdu(resp, pdu.sequence, ESME_RINVBNDSTS))
            return

        # Two per round trip (the MO and the receipt of its reply): no Deferred unless the
        # callback returned one (the MO store's group commit does; answered when it fires).
        try:
            result = self._dispatch_deliver(pdu)
        except Exception:
            result = Failure()
        if isinstance(result, defer.Deferred):
            result.addBoth(self._answer_deliver, resp, pdu.sequence)
        else:
            self._answer_deliver(result, resp, pdu.sequence)

    def _answer_deliver(self, result: Any, resp: str, sequence: int) -> None:
        if not isinstance(result, Failure):
            try:
                status = ESME_ROK if result is None else int(result) & 0xFFFFFFFF
            except Exception:
                result = Failure()
        if isinstance(result, Failure):
            self.log.failure("deliver callback failed; answering ESME_RX_T_APPN", result)
            status = ESME_RX_T_APPN
        self._write(encode_pdu(resp, sequence, status))

    def _dispatch_deliver(self, pdu: Pdu) -> Any:
        if is_receipt(pdu):
            receipt = build_receipt(pdu)
            if self.trace:
                self.log.debug("receipt for {msgid} stat={stat} from {src}",
                               msgid=receipt.message_id, stat=receipt.stat,
                               src=mask_msisdn(receipt.source_addr))
            return self.on_receipt(receipt)
        mo = build_mo(pdu, self.reassembler, self.clock.seconds())
        if self.trace:
            self.log.debug("MO from {src} to {dst} concat={concat} complete={complete}",
                           src=mask_msisdn(mo.source_addr), dst=mo.destination_addr,
                           concat=mo.concat, complete=mo.complete)
        return self.on_deliver(mo)

    # -- output ------------------------------------------------------------------------------

    def _on_idle(self) -> None:
        self._idle_call = self.clock.callLater(self.config.enquire_link_s, self._on_idle)
        if self.state == "bound" and not any(
            o.command == "enquire_link" for o in self._outstanding.values()
        ):
            self._request("enquire_link").addErrback(lambda f: None)

class ESMEFactory(protocol.ClientFactory):
    """Builds ESMEProtocol instances sharing one MO reassembler."""

    protocol = ESMEProtocol
    noisy = False

    def __init__(self, config: SessionSettings, on_deliver: OnDeliver, on_receipt: OnReceipt,
                 *, clock: IReactorTime, reassembler: Reassembler | None = None):
        self.config = config
        self.on_deliver = on_deliver
        self.on_receipt = on_receipt
        self.clock = clock
        self.reassembler = reassembler or Reassembler(config.mo_reassembly_timeout_s)
        self.rate = make_rate(config)  # shared: a reconnect does not forget a throttle

    def buildProtocol(self, addr: IAddress) -> ESMEProtocol:
        p = self.protocol(self.config, self.on_deliver, self.on_receipt,
                          clock=self.clock, reassembler=self.reassembler, rate=self.rate)
        p.factory = self
        return p
