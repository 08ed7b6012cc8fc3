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
    return ((pdu.params.get("esm_class") or 0) & 0x3C) in RECEIPT_ESM_TYPES


def build_receipt(pdu: Pdu) -> DeliveryReceipt:
    get = pdu.params.get  # pdu.get's defaults are falsy: ``or`` gives the same values
    raw = get("short_message") or get("message_payload") or b""
    text = raw.decode("latin-1")
    fields = parse_receipt_text(text)
    tlv_id = get("receipted_message_id")
    text_id = fields.id if fields else None
    message_id = tlv_id or text_id or ""
    if tlv_id and text_id and tlv_id != text_id:
        keys = normalise_message_id(tlv_id) | normalise_message_id(text_id)
    elif message_id:  # one id, or the same one twice (the usual receipt): one reading
        keys = normalise_message_id(message_id)
    else:
        keys = frozenset()
    state = get("message_state")
    stat = (fields.stat.upper() if fields and fields.stat else None) or MESSAGE_STATES.get(state)
    return DeliveryReceipt(
        message_id=message_id, id_keys=keys, stat=stat, err=fields.err if fields else None,
        message_state=state, source_addr=get("source_addr") or "",
        destination_addr=get("destination_addr") or "", text=text, fields=fields,
    )


_DEDUP_FIELDS = ("source_addr", "destination_addr", "esm_class", "data_coding", "short_message",
                 "message_payload", "sar_msg_ref_num", "sar_total_segments",
                 "sar_segment_seqnum")


def _dedup_key_general(pdu: Pdu) -> str:
    """The definition of the key: name=value; for each field (bytes raw, anything else as
    its str() in UTF-8), hashed with sha256."""
    h = hashlib.sha256()
    for name in _DEDUP_FIELDS:
        value = pdu.get(name)
        h.update(name.encode() + b"=" + (value if isinstance(value, bytes) else
                                          str(value).encode("utf-8")) + b";")
    return h.hexdigest()[:32]


def dedup_key(pdu: Pdu) -> str:
    """Stable hash of the PDU's content (see ``_dedup_key_general``): the same bytes hashed
    in one call, so keys stored before this shortcut still match."""
    get = pdu.params.get
    sm, payload = get("short_message"), get("message_payload")
    src, dst, esm, dc = get("source_addr"), get("destination_addr"), get("esm_class"), get(
        "data_coding")
    ref, total, seq = get("sar_msg_ref_num"), get("sar_total_segments"), get(
        "sar_segment_seqnum")
    if (type(src) is not str or type(dst) is not str or type(esm) is not int
            or type(dc) is not int or not (sm is None or type(sm) is bytes)
            or not (payload is None or type(payload) is bytes)
            or not (ref is None or type(ref) is int) or not (total is None or type(total) is int)
            or not (seq is None or type(seq) is int)):
        return _dedup_key_general(pdu)  # not as decode_pdu builds it: the long way
    data = b"".join((
        f"source_addr={src};destination_addr={dst};esm_class={esm};data_coding={dc};"
        "short_message=".encode(),
        b"None" if sm is None else sm,
        b";message_payload=",
        b"None" if payload is None else payload,
        f";sar_msg_ref_num={ref};sar_total_segments={total};sar_segment_seqnum={seq};".encode(),
    ))
    return hashlib.sha256(data).hexdigest()[:32]


def build_mo(pdu: Pdu, reassembler: Reassembler, now: float) -> MOMessage:
    get = pdu.params.get  # pdu.get's defaults are falsy: ``or`` gives the same values
    esm_class = get("esm_class") or 0
    decoded = decode_short_message(
        get("data_coding") or 0, esm_class, get("short_message"),
        message_payload=get("message_payload"),
        sar_msg_ref_num=get("sar_msg_ref_num"),
        sar_total_segments=get("sar_total_segments"),
        sar_segment_seqnum=get("sar_segment_seqnum"),
    )
    source = get("source_addr") or ""
    whole = reassembler.add(source, decoded, now)
    return MOMessage(
        source_addr=source, destination_addr=get("destination_addr") or "",
        text=whole if whole is not None else decoded.text, complete=whole is not None,
        concat=decoded.concat, segment_text=decoded.text,
        data_coding=decoded.data_coding, esm_class=esm_class,
        dedup_key=dedup_key(pdu),
    )
