"""What the SMSC simulator records and sends: accepted submits, whole MT messages, and the
deliver_sm fields of MO messages and delivery receipts (no Twisted)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sms.encoding import DC_GSM, DC_LATIN1, DC_UCS2, ESM_UDHI, Concat, choose_coding, encode_gsm

_MESSAGE_STATES = {"DELIVRD": 2, "EXPIRED": 3, "DELETED": 4, "UNDELIV": 5, "ACCEPTD": 6,
                   "REJECTD": 8}


@dataclass(frozen=True)
class SubmitRecord:
    """One accepted submit_sm."""

    message_id: str
    destination: str
    source: str
    data_coding: int
    esm_class: int
    short_message: bytes
    udh: bytes
    text: str  # this part's decoded text
    concat: Concat | None
    registered_delivery: int


@dataclass(frozen=True)
class MTMessage:
    """A whole MT message as the handset shows it (parts joined)."""

    destination: str
    source: str
    text: str
    parts: int


def receipt_deliver_fields(rec: SubmitRecord, receipt_id: str, stat: str, *,
                           with_tlvs: bool) -> dict[str, Any]:
    """The deliver_sm of a receipt for ``rec``: Appendix B text quoting ``receipt_id``, and
    (``with_tlvs``) the receipted_message_id / message_state TLVs."""
    stamp = time.strftime("%y%m%d%H%M")
    err = "000" if stat == "DELIVRD" else "001"
    text = (f"id:{receipt_id} sub:001 dlvrd:{'001' if err == '000' else '000'} submit date:"
            f"{stamp} done date:{stamp} stat:{stat} err:{err} text:"
            + rec.text[:20].encode("ascii", "replace").decode())
    fields: dict[str, Any] = dict(
        source_addr=rec.destination, destination_addr=rec.source, esm_class=0x04,
        data_coding=DC_GSM, short_message=text.encode("ascii"),
    )
    if with_tlvs:
        fields.update(receipted_message_id=rec.message_id,
                      message_state=_MESSAGE_STATES.get(stat, 7))
    return fields


def mo_deliver_fields(
    source: str,
    destination: str,
    text: str,
    *,
    coding: str | int | None,
    split_into: int | None,
    ref: int,
    ref16: bool,
    use_sar: bool,
    use_payload: bool,
) -> list[dict[str, Any]]:
    """The deliver_sm fields of each part of an MO (see ``SMSCSimulator.inject_mo``)."""
    if coding is None:
        coding = choose_coding(text)
    dc = {"gsm": DC_GSM, "ucs2": DC_UCS2, "latin1": DC_LATIN1}.get(coding, coding)
    if dc == DC_UCS2:
        data = text.encode("utf-16-be")
    elif dc == DC_GSM:
        data = encode_gsm(text)
    else:
        data = text.encode("latin-1")
    n = max(1, split_into or 1)
    step = -(-len(data) // n)
    if dc == DC_UCS2:
        step += step % 2
    chunks = [data[i : i + step] for i in range(0, len(data), step)] or [b""]
    total = len(chunks)
    if not (ref16 or use_sar):
        ref &= 0xFF
    pdus = []
    for seq, chunk in enumerate(chunks, start=1):
        fields: dict[str, Any] = dict(
            source_addr=source, destination_addr=destination, data_coding=dc, esm_class=0,
        )
        body = chunk
        if total > 1 and use_sar:
            fields.update(sar_msg_ref_num=ref, sar_total_segments=total,
                          sar_segment_seqnum=seq)
        elif total > 1:
            udh = (bytes([6, 8, 4, ref >> 8, ref & 0xFF, total, seq]) if ref16
                   else bytes([5, 0, 3, ref, total, seq]))
            body = udh + chunk
            fields["esm_class"] = ESM_UDHI
        fields["message_payload" if use_payload else "short_message"] = body
        pdus.append(fields)
    return pdus
