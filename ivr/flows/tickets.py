"""Main-menu answer 6: make-up claims and complaints, with a voice note, and their status.

    1 make-up claim   2 complaint   3 status of the latest one   * back

A claim or complaint is a recorded voice note (``RECORD FILE``: a beep, ``#`` to finish, at
most ``fastagi.max_recording_s``), which the caller may hear back and record again before
sending it. A complaint may name the member's latest order. The ticket keeps the recording's
path and the caller hears its reference (spelled out), with the SMS copy offer. Ops answer it
with ``loyalty tickets resolve`` (``core.tickets``).
"""

from __future__ import annotations

import re

from core import messages
from core.domain import Channel, Ticket, TicketKind
from core.redemption import recent_orders
from core.service_desk import record_ticket
from core.tickets import latest_ticket
from ivr.flows.menu import Call
from ivr.flows.speech import NO_KEYS, SKIP_KEY, Digits, Num, Piece
from ivr.flows.trouble import call_failed

PROMPT_IDS = frozenset({
    "tkt_menu", "tkt_about_order", "tkt_order_keys", "tkt_record_intro", "tkt_review",
    "tkt_registered", "tkt_none", "tkt_latest", "tkt_status_open", "tkt_status_resolved",
    "tkt_credited",
})

RECORDING_FORMAT = "wav"
FINISH_KEY = "#"
SILENCE_S = 5  # this long without speech ends the note, as # does
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


async def tickets_menu(call: Call) -> str | None:
    key = await call.choose(["tkt_menu"], "123*")
    if key == "*":
        return None
    if key == "3":
        call.info.detail("status")
        return await latest_status(call)
    kind = TicketKind.MAKEUP if key == "1" else TicketKind.COMPLAINT
    call.info.detail(str(kind))
    order_no = await _order_of_complaint(call) if kind == TicketKind.COMPLAINT else None
    path = await record_note(call)
    if path is None:
        return None
    ticket = await call.run(record_ticket, call.msisdn, kind, "", Channel.IVR, call.now(),
                            recording_path=path, order_no=order_no)
    await call.voice.play("tkt_registered", Digits(ticket.ref), escape=SKIP_KEY)
    return await call.offer_sms(messages.ticket_message(ticket.kind, ticket.ref))


async def _order_of_complaint(call: Call) -> str | None:
    """The latest order, when the caller says the complaint is about it."""
    orders = await call.run(recent_orders, call.msisdn, limit=1, write=False)
    if not orders:
        return None
    order_no = orders[0].order_no
    # The order number is a read-out: the caller hears it whole before answering.
    key = await call.choose(["tkt_order_keys"], "12",
                            readout=["tkt_about_order", Digits(order_no)])
    return order_no if key == "1" else None


def recording_name(call: Call, attempt: int) -> str:
    """Where Asterisk writes the note (no extension): one name per call and attempt."""
    uid = _UNSAFE.sub("-", call.channel.uniqueid or "call")
    base = call.settings.recordings_dir.rstrip("/")
    return f"{base}/{call.now():%Y%m%d}-{uid}-{attempt}"


async def record_note(call: Call) -> str | None:
    """Record, then 1 hear it, 2 record again, 3 send: the file's path, or None when it could
    not be recorded (the caller heard why)."""
    attempt = 0
    while True:
        attempt += 1
        name = recording_name(call, attempt)
        await call.voice.play("tkt_record_intro", escape=NO_KEYS)
        result = await call.channel.record_file(
            name, RECORDING_FORMAT, FINISH_KEY, call.settings.max_recording_s * 1000,
            beep=True, silence_s=SILENCE_S)
        if result.failed and not call.channel.hung_up:
            call_failed(call.info, f"recording a voice note ({result.why})")
            await call.voice.play("err_system", escape=NO_KEYS)
            return None
        while True:
            key = await call.choose(["tkt_review"], "123")
            if key == "1":
                await call.channel.stream_file(name, FINISH_KEY)
                continue
            break
        if key == "3":
            return f"{name}.{RECORDING_FORMAT}"


async def latest_status(call: Call) -> str | None:
    ticket = await call.run(latest_ticket, call.msisdn, write=False)
    if ticket is None:
        await call.voice.play("tkt_none", escape=SKIP_KEY)
        return None
    await call.voice.play(*status_pieces(ticket), escape=SKIP_KEY)
    return await call.offer_sms(messages.ticket_status_message(ticket))


def status_pieces(ticket: Ticket) -> list[Piece]:
    pieces: list[Piece] = ["tkt_latest", Digits(ticket.ref)]
    if ticket.status == "open":
        return pieces + ["tkt_status_open"]
    pieces.append("tkt_status_resolved")
    if ticket.credit_points:
        pieces += ["tkt_credited", Num(ticket.credit_points), "unit_points"]
    return pieces
