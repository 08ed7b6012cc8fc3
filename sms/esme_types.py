"""Errors and value objects of the ESME session (no Twisted)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sms.encoding import Concat, Reassembler, decode_short_message
from sms.pdu import ESME_RMSGQFUL, ESME_RTHROTTLED, Pdu
from sms.receipt_text import Receipt, normalise_message_id, parse_receipt_text

TEMPORARY_STATUSES = frozenset({ESME_RTHROTTLED, ESME_RMSGQFUL})
RECEIPT_ESM_TYPES = frozenset({0x04, 0x20})  # SMSC delivery receipt, intermediate notification
MESSAGE_STATES = {
    1: "ENROUTE", 2: "DELIVRD", 3: "EXPIRED", 4: "DELETED", 5: "UNDELIV", 6: "ACCEPTD",
    7: "UNKNOWN", 8: "REJECTD",
}


class SMPPError(Exception):
    """Base of session errors. ``status`` is the SMPP command_status when there was one."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class TemporaryError(SMPPError):
    """Retry later: throttled (0x58), queue full (0x14), response timeout, link lost, unbound."""


class NotBound(TemporaryError):
    """No bound SMPP session right now."""


class PermanentError(SMPPError):
    """The SMSC rejected the request with a non-temporary command_status (do not retry)."""


class BindFailed(PermanentError):
    """bind_* answered with a non-zero command_status (the service still retries, with backoff)."""


def status_error(status: int, what: str) -> SMPPError:
    cls = TemporaryError if status in TEMPORARY_STATUSES else PermanentError
    return cls(f"{what} failed with command_status 0x{status:08x}", status)


@dataclass(frozen=True)
class SubmitResult:
    message_ids: list[str]  # one per part, in order, exactly as the SMSC gave them
    data_coding: int
    parts: int


@dataclass(frozen=True)
class MOMessage:
    """One deliver_sm (or data_sm) from a subscriber.

    ``complete`` is True when ``text`` is the whole message: an unsegmented message, or the
    segment that completed a concatenated set in the session's in-memory reassembler (then
    ``text`` is the joined text). For any other segment ``complete`` is False and ``text`` is
    the segment's own text. ``concat`` = (ref, total, seq) for segments, so a handler that
    wants restart-proof reassembly can store every segment itself.
    """

    source_addr: str
    destination_addr: str
    text: str
    complete: bool
    concat: Concat | None
    segment_text: str
    data_coding: int
    esm_class: int
    dedup_key: str  # stable hash of this PDU's content: a redelivered deliver_sm has the same


@dataclass(frozen=True)
class DeliveryReceipt:
    message_id: str  # receipted_message_id TLV, else the ``id:`` of the text
    id_keys: frozenset[str]  # normalise_message_id keys of both; match on any
    stat: str | None  # DELIVRD, UNDELIV, EXPIRED, REJECTD, ... (from text or message_state)
    err: str | None
    message_state: int | None
    source_addr: str  # the subscriber (the original MT destination)
    destination_addr: str
    text: str
    fields: Receipt | None

    @property
    def delivered(self) -> bool:
        return self.stat == "DELIVRD" or self.message_state == 2


def is_receipt(pdu: Pdu) -> bool:
    return (pdu.get("esm_class", 0) & 0x3C) in RECEIPT_ESM_TYPES


def build_receipt(pdu: Pdu) -> DeliveryReceipt:
    raw = pdu.get("short_message") or pdu.get("message_payload") or b""
    text = raw.decode("latin-1")
    fields = parse_receipt_text(text)
    tlv_id = pdu.get("receipted_message_id")
    message_id = tlv_id or (fields.id if fields else "")
    keys: frozenset[str] = frozenset()
    for candidate in (tlv_id, fields.id if fields else None):
        if candidate:
            keys |= normalise_message_id(candidate)
    state = pdu.get("message_state")
    stat = (fields.stat.upper() if fields and fields.stat else None) or MESSAGE_STATES.get(state)
    return DeliveryReceipt(
        message_id=message_id, id_keys=keys, stat=stat, err=fields.err if fields else None,
        message_state=state, source_addr=pdu.get("source_addr", ""),
        destination_addr=pdu.get("destination_addr", ""), text=text, fields=fields,
    )


def dedup_key(pdu: Pdu) -> str:
    h = hashlib.sha256()
    for name in ("source_addr", "destination_addr", "esm_class", "data_coding",
                 "short_message", "message_payload", "sar_msg_ref_num",
                 "sar_total_segments", "sar_segment_seqnum"):
        value = pdu.get(name)
        h.update(name.encode() + b"=" + (value if isinstance(value, bytes) else
                                          str(value).encode("utf-8")) + b";")
    return h.hexdigest()[:32]


def build_mo(pdu: Pdu, reassembler: Reassembler, now: float) -> MOMessage:
    decoded = decode_short_message(
        pdu.get("data_coding", 0), pdu.get("esm_class", 0), pdu.get("short_message"),
        message_payload=pdu.get("message_payload"),
        sar_msg_ref_num=pdu.get("sar_msg_ref_num"),
        sar_total_segments=pdu.get("sar_total_segments"),
        sar_segment_seqnum=pdu.get("sar_segment_seqnum"),
    )
    source = pdu.get("source_addr", "")
    whole = reassembler.add(source, decoded, now)
    return MOMessage(
        source_addr=source, destination_addr=pdu.get("destination_addr", ""),
        text=whole if whole is not None else decoded.text, complete=whole is not None,
        concat=decoded.concat, segment_text=decoded.text,
        data_coding=decoded.data_coding, esm_class=pdu.get("esm_class", 0),
        dedup_key=dedup_key(pdu),
    )
