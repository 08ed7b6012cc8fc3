"""An SMSC simulator: a real SMPP 3.4 server over TCP for tests, demos and `loyalty simulate sms`.

In process::

    sim = SMSCSimulator(system_id="loyalty", password="secret")
    port = sim.listen(0)                      # 127.0.0.1, ephemeral port: port.getHost().port
    ...
    sim.texts_to("13812345678")               # reassembled MT texts the subscriber got
    status = await sim.inject_mo("13812345678", "JF")   # deliver_sm_resp status
    await sim.stop()

Standalone: ``python -m harness.smsc_simulator --port 2775`` logs every PDU; type
``mo <msisdn> <text>`` on stdin to send an MO message to the bound ESME.

Misbehaviour on demand: ``throttle_next(n, status)``, ``throttle_fraction``,
``drop_after_submits(n)``, ``response_delay_s``, ``never_respond``, ``send_garbage(kind)``,
``send_unbind()``, ``refuse_binds(n, seconds)``, ``hold_submits_from`` (system ids whose
submit_sm are never answered).

Several binds at once (one per server process): ``accounts`` adds system ids (with their
passwords) to the one given, any of them may bind more than once, and ``spread_mo`` deals MO
out to the receiving sessions in turn, as an SMSC does over an account's binds (otherwise
every MO goes to the newest one; ``mo_to``: to binds of that system id only).
``accepted_from`` counts accepted submits per system id.

Message ids come in ``id_style`` ("hex", "HEX" or "dec"); receipts may quote them in another
``receipt_id_style`` ("same", "dec", "hex", "HEX", "zeros") to exercise id normalisation; the
receipted_message_id TLV always carries the submit_sm_resp form.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from twisted.internet import defer, protocol, task
from twisted.logger import Logger

from core.domain import mask_msisdn
from harness.smsc_sim_messages import (
    MTMessage,
    SubmitRecord,
    mo_deliver_fields,
    receipt_deliver_fields,
)
from harness.smsc_sim_protocol import SMSCProtocol
from sms.encoding import ESM_UDHI, Reassembler, decode_short_message
from sms.pdu import (
    ESME_RBINDFAIL,
    ESME_RMSGQFUL,
    ESME_RTHROTTLED,
)

__all__ = ["MTMessage", "SMSCSimulator", "SubmitRecord", "main"]

log = Logger()


class SMSCSimulator(protocol.ServerFactory):
    protocol = SMSCProtocol
    noisy = False

    def __init__(
        self,
        system_id: str = "loyalty",
        password: str = "secret",
        *,
        id_style: str = "hex",
        receipt_id_style: str = "same",
        receipts: bool = True,
        receipt_delay_s: float = 0.0,
        receipt_before_resp: bool = False,
        receipt_stat: str = "DELIVRD",
        receipt_tlvs: bool = True,
        enquire_link_s: float | None = None,
        short_code: str = "10086",
        clock: Any = None,
        log_pdus: bool = False,
        accounts: dict[str, str] | None = None,
        spread_mo: bool = False,
    ):
        if clock is None:
            from twisted.internet import reactor as clock
        self.clock = clock
        self.system_id, self.password = system_id, password
        self.accounts = {system_id: password, **(accounts or {})}
        self.spread_mo = spread_mo
        self.mo_to: str | None = None  # a system id: every MO goes to a bind of it
        self._turn = 0  # the next receiving session to get an MO (spread_mo)
        self.id_style, self.receipt_id_style = id_style, receipt_id_style
        self.receipts, self.receipt_delay_s = receipts, receipt_delay_s
        self.receipt_before_resp, self.receipt_stat = receipt_before_resp, receipt_stat
        self.receipt_tlvs = receipt_tlvs
        self.enquire_link_s = enquire_link_s
        self.short_code = short_code
        self.log_pdus = log_pdus
        # misbehaviour knobs
        self.throttle_fraction = 0.0
        self.response_delay_s = 0.0
        self.never_respond = False  # submit_sm are received (and count) but never answered
        self.hold_submits_from: set[str] = set()  # the same, for binds of these system ids
        self.mute = False  # ignore every PDU from the ESME (a black-holed link)
        self._forced_statuses: list[int] = []
        self._drop_after: int | None = None
        self._refuse_count = 0
        self._refuse_until = float("-inf")
        self._refuse_status = ESME_RBINDFAIL
        # records
        self.connections: list[SMSCProtocol] = []  # currently connected
        self.sessions: list[SMSCProtocol] = []  # currently bound
        self.bind_attempts = 0
        self.binds = 0
        self.submits: list[SubmitRecord] = []  # accepted parts
        self.accepted_from: Counter[str] = Counter()  # accepted parts per bound system id
        self.messages: list[MTMessage] = []  # accepted, reassembled
        self.submit_statuses: list[int] = []  # every answer given to a submit_sm, in order
        self.submit_times: list[float] = []  # arrival time of every submit_sm
        self.max_outstanding = 0
        self.received: list[str] = []  # command names of every PDU received
        self.enquire_links_received = 0
        self.nacks_received: list[int] = []  # generic_nack statuses the ESME sent us
        self.receipts_sent: list[tuple[str, int]] = []  # (message_id, deliver_sm_resp status)
        self.mo_statuses: list[int] = []
        self._next_id = random.randrange(0x10000, 0x7FFFFFF)
        self._ids: dict[str, int] = {}
        self._mt = Reassembler(timeout_s=600)
        self._pending_receipts: list[SubmitRecord] = []
        self._mo_ref = random.randrange(256)
        self._port: Any = None

    # -- running -----------------------------------------------------------------------------

    def listen(self, port: int = 0, interface: str = "127.0.0.1") -> Any:
        from twisted.internet import reactor

        self._port = reactor.listenTCP(port, self, interface=interface)
        return self._port

    @property
    def port(self) -> int:
        return self._port.getHost().port

    def stop(self) -> defer.Deferred:
        """Stop listening and drop every connection; fires when all are closed."""
        ds = [p.when_closed() for p in list(self.connections)]
        for p in list(self.connections):
            p.transport.abortConnection()
        if self._port is not None:
            ds.append(defer.maybeDeferred(self._port.stopListening))
        return defer.DeferredList(ds)

    def buildProtocol(self, addr: Any) -> SMSCProtocol:
        return SMSCProtocol(self)

    @property
    def session(self) -> SMSCProtocol | None:
        """The most recently bound session that can receive deliver_sm."""
        for p in reversed(self.sessions):
            if p.bound_as in ("transceiver", "receiver"):
                return p
        return None

    def _next_receiver(self) -> SMSCProtocol | None:
        receivers = [p for p in self.sessions if p.can_receive
                     and self.mo_to in (None, p.system_id)]
        if not receivers:
            return None
        self._turn = (self._turn + 1) % len(receivers)
        return receivers[self._turn]

    # -- misbehaviour ------------------------------------------------------------------------

    def throttle_next(self, n: int, status: int = ESME_RTHROTTLED, after: int = 0) -> None:
        """Answer ``n`` submit_sm with ``status`` (0x58 throttled by default), after accepting
        the next ``after`` ones normally. Any status works (e.g. 0x0B for a permanent error)."""
        self._forced_statuses.extend([0] * after + [status] * n)

    def queue_full_next(self, n: int) -> None:
        self.throttle_next(n, ESME_RMSGQFUL)

    def drop_after_submits(self, n: int) -> None:
        """Close the connection right after accepting ``n`` more submits (their responses are
        flushed; anything the ESME sent after them is ignored, i.e. not accepted)."""
        self._drop_after = n

    def refuse_binds(self, n: int = 0, seconds: float = 0.0,
                     status: int = ESME_RBINDFAIL) -> None:
        """Refuse the next ``n`` binds and/or every bind for ``seconds``."""
        self._refuse_count = n
        self._refuse_until = self.clock.seconds() + seconds
        self._refuse_status = status

    def send_garbage(self, kind: str = "command") -> defer.Deferred:
        """"command": unknown command_id; "body": deliver_sm with a truncated body;
        "length": impossible command_length. Fires with the generic_nack status the ESME
        answered, or None if it closed the connection first."""
        return self._need_session().send_garbage(kind)

    def send_unbind(self) -> defer.Deferred:
        """Unbind the current session; fires with the unbind_resp status."""
        return self._need_session().request("unbind")

    def send_enquire_link(self) -> defer.Deferred:
        return self._need_session().request("enquire_link")

    def _need_session(self) -> SMSCProtocol:
        s = self.session or (self.sessions[-1] if self.sessions else None)
        if s is None:
            raise RuntimeError("no bound ESME session")
        return s

    # -- decisions used by SMSCProtocol ------------------------------------------------------

    def check_bind(self, system_id: str, password: str) -> int:
        self.bind_attempts += 1
        if self.accounts.get(system_id) != password:
            return ESME_RBINDFAIL
        if self._refuse_count > 0:
            self._refuse_count -= 1
            return self._refuse_status
        if self.clock.seconds() < self._refuse_until:
            return self._refuse_status
        return 0

    def submit_status(self) -> int:
        if self._forced_statuses:
            return self._forced_statuses.pop(0)
        if self.throttle_fraction and random.random() < self.throttle_fraction:
            return ESME_RTHROTTLED
        return 0

    def take_drop(self) -> bool:
        """Called after each accepted submit; True when the connection must drop now."""
        if self._drop_after is None:
            return False
        self._drop_after -= 1
        if self._drop_after <= 0:
            self._drop_after = None
            return True
        return False

    def new_message_id(self) -> str:
        self._next_id += 1
        n = self._next_id
        mid = {"hex": f"{n:x}", "HEX": f"{n:X}"}.get(self.id_style, str(n))
        self._ids[mid] = n
        return mid

    def receipt_id(self, message_id: str) -> str:
        n = self._ids.get(message_id)
        style = self.receipt_id_style
        if n is None or style == "same":
            return message_id
        if style == "zeros":
            return message_id.rjust(12, "0")
        return {"hex": f"{n:x}", "HEX": f"{n:X}"}.get(style, str(n))

    def accept(self, fields: dict[str, Any], message_id: str) -> SubmitRecord:
        dc, esm = fields.get("data_coding", 0), fields.get("esm_class", 0)
        sm = fields.get("short_message") or b""
        decoded = decode_short_message(dc, esm, sm, message_payload=fields.get("message_payload"))
        udh = sm[: 1 + sm[0]] if esm & ESM_UDHI and sm else b""
        rec = SubmitRecord(
            message_id=message_id, destination=fields.get("destination_addr", ""),
            source=fields.get("source_addr", ""), data_coding=dc, esm_class=esm,
            short_message=sm, udh=udh, text=decoded.text, concat=decoded.concat,
            registered_delivery=fields.get("registered_delivery", 0),
        )
        self.submits.append(rec)
        whole = self._mt.add(rec.destination, decoded, self.clock.seconds())
        if whole is not None:
            parts = decoded.concat.total if decoded.concat else 1
            self.messages.append(MTMessage(rec.destination, rec.source, whole, parts))
            if self.log_pdus:
                log.info("MT to {dst}: {text!r}", dst=mask_msisdn(rec.destination), text=whole)
        return rec

    def receipt_fields(self, rec: SubmitRecord) -> dict[str, Any]:
        return receipt_deliver_fields(rec, self.receipt_id(rec.message_id), self.receipt_stat,
                                      with_tlvs=self.receipt_tlvs)

    def send_receipt(self, rec: SubmitRecord, via: SMSCProtocol | None = None) -> None:
        """Deliver a receipt for ``rec`` (on ``via`` if it can receive, else the current
        receiver session, else after the next bind)."""
        target = via if via is not None and via.can_receive else self.session
        if target is None:
            self._pending_receipts.append(rec)
            return
        target.send_deliver(self.receipt_fields(rec)).addCallbacks(
            lambda st: self.receipts_sent.append((rec.message_id, st)),
            lambda f: self._pending_receipts.append(rec))  # link lost: redeliver later

    def on_bound(self, proto: SMSCProtocol) -> None:
        self.binds += 1
        self.sessions.append(proto)
        if proto.can_receive:
            pending, self._pending_receipts = self._pending_receipts, []
            for rec in pending:
                self.send_receipt(rec, proto)

    # -- MO ----------------------------------------------------------------------------------

    def inject_mo(
        self,
        source: str,
        text: str,
        *,
        destination: str | None = None,
        coding: str | int | None = None,
        split_into: int | None = None,
        ref16: bool = False,
        use_sar: bool = False,
        use_payload: bool = False,
        order: list[int] | None = None,
    ) -> defer.Deferred:
        """Send ``text`` from ``source`` as deliver_sm(s); fires with the deliver_sm_resp
        status (the first non-zero one when split). ``coding``: "gsm", "ucs2", "latin1" or a
        data_coding int (default: GSM if possible, else UCS-2). ``split_into`` n parts, cut
        naively (a UCS-2 surrogate pair or a GSM escape may straddle two parts, as some
        handsets do) with an 8-bit (or ``ref16``) concatenation UDH, or SAR TLVs with
        ``use_sar``; ``use_payload`` carries the data in message_payload; ``order`` lists the
        1-based part numbers to send (out of order, duplicates allowed)."""
        session = self._next_receiver() if self.spread_mo or self.mo_to else self.session
        if session is None:
            return defer.fail(RuntimeError("no bound ESME session to deliver to"))
        self._mo_ref = (self._mo_ref + 1) & 0xFFFF
        pdus = mo_deliver_fields(
            source, destination or self.short_code, text, coding=coding, split_into=split_into,
            ref=self._mo_ref, ref16=ref16, use_sar=use_sar, use_payload=use_payload,
        )
        sequence = order or list(range(1, len(pdus) + 1))
        ds = [session.send_deliver(pdus[i - 1]) for i in sequence]

        def collect(statuses: list[int]) -> int:
            self.mo_statuses.extend(statuses)
            return next((s for s in statuses if s), 0)

        return defer.gatherResults(ds, consumeErrors=True).addCallback(collect)

    # -- test helpers ------------------------------------------------------------------------

    def texts_to(self, destination: str) -> list[str]:
        return [m.text for m in self.messages if m.destination == destination]

    def wait_for(self, predicate: Any, timeout: float = 5.0) -> defer.Deferred:
        """Fires (with None) once ``predicate()`` is true; TimeoutError after ``timeout``."""
        start = self.clock.seconds()
        d: defer.Deferred = defer.Deferred()

        def check() -> None:
            if predicate():
                loop.stop()
                d.callback(None)
            elif self.clock.seconds() - start > timeout:
                loop.stop()
                d.errback(defer.TimeoutError(f"condition not met within {timeout}s"))

        loop = task.LoopingCall(check)
        loop.clock = self.clock
        loop.start(0.01, now=True)
        return d


def main(argv: list[str] | None = None) -> None:
    from harness.smsc_sim_cli import run

    run(argv)


if __name__ == "__main__":
    main()
