"""Hand-written codec for the PDUs of every SMS round trip (see sms/pdu.py).

deliver_sm and submit_sm share one mandatory layout (the "short message" layout, SMPP 3.4
4.4.1 / 4.6.1); their answers carry just a message_id. The compiled-table walk of sms/pdu.py
spends most of its time per field in the loop itself (a tuple unpacked and a kind compared per
field), so these four are read and written here field by field. Each function answers only
the ordinary case and returns None for anything else (a field or the body cut short, TLVs to
write): the general walk then decides, with its errors. tests/sms/test_pdu_fast.py checks
both agree, byte for byte and field for field.
"""

from __future__ import annotations

from typing import Any

# The mandatory fields of the short message layout, in order (sm_length is derived).
SM_FIELDS = (
    "service_type", "source_addr_ton", "source_addr_npi", "source_addr", "dest_addr_ton",
    "dest_addr_npi", "destination_addr", "esm_class", "protocol_id", "priority_flag",
    "schedule_delivery_time", "validity_period", "registered_delivery",
    "replace_if_present_flag", "data_coding", "sm_default_msg_id", "sm_length",
    "short_message",
)
_SM_KEYS = frozenset(SM_FIELDS) - {"sm_length"}


def decode_sm_mandatory(body: bytes) -> tuple[dict[str, Any], int] | None:
    """The mandatory fields of a deliver_sm / submit_sm body and where its TLVs start, when
    every field is there and well formed; None otherwise."""
    find = body.find
    a = find(b"\0")  # after service_type
    if a < 0:
        return None
    b = find(b"\0", a + 3)  # after source_addr (ton, npi before it)
    if b < 0:
        return None
    c = find(b"\0", b + 3)  # after destination_addr
    if c < 0:
        return None
    d = find(b"\0", c + 4)  # after schedule_delivery_time (esm_class, protocol_id, priority)
    if d < 0:
        return None
    e = find(b"\0", d + 1)  # after validity_period
    if e < 0:
        return None
    p = e + 6  # registered_delivery, replace_if_present, data_coding, default_msg_id, sm_length
    end = len(body)
    if p > end:
        return None
    sm_length = body[p - 1]
    q = p + sm_length
    if q > end:
        return None
    values = {
        "service_type": body[:a].decode("latin-1"),
        "source_addr_ton": body[a + 1], "source_addr_npi": body[a + 2],
        "source_addr": body[a + 3 : b].decode("latin-1"),
        "dest_addr_ton": body[b + 1], "dest_addr_npi": body[b + 2],
        "destination_addr": body[b + 3 : c].decode("latin-1"),
        "esm_class": body[c + 1], "protocol_id": body[c + 2], "priority_flag": body[c + 3],
        "schedule_delivery_time": body[c + 4 : d].decode("latin-1"),
        "validity_period": body[d + 1 : e].decode("latin-1"),
        "registered_delivery": body[e + 1], "replace_if_present_flag": body[e + 2],
        "data_coding": body[e + 3], "sm_default_msg_id": body[e + 4], "sm_length": sm_length,
    }
    if p < end:  # the general walk stops at the end of the body: no short_message then
        values["short_message"] = body[p:q]
    return values, q


def decode_message_id_body(body: bytes) -> dict[str, Any] | None:
    """The fields of a submit_sm_resp / deliver_sm_resp body: nothing, or one message_id."""
    if not body:
        return {}
    if body.find(b"\0") != len(body) - 1:
        return None
    return {"message_id": body[:-1].decode("latin-1")}


def _cstr(value: Any, size: int) -> bytes:
    if not value:
        return b"\0"
    if len(value) >= size:  # smpplib keeps max - 1 characters and the NUL
        value = value[: size - 1]
    return value.encode("latin-1") + b"\0"


def encode_sm_body(params: dict[str, Any]) -> bytes | None:
    """A submit_sm / deliver_sm body with mandatory fields only; None when ``params`` has
    anything else (TLVs: the general walk writes those)."""
    if not _SM_KEYS.issuperset(params):
        return None
    g = params.get
    sm = g("short_message") or b""
    return b"".join((
        _cstr(g("service_type"), 6),
        bytes((g("source_addr_ton") or 0, g("source_addr_npi") or 0)),
        _cstr(g("source_addr"), 21),
        bytes((g("dest_addr_ton") or 0, g("dest_addr_npi") or 0)),
        _cstr(g("destination_addr"), 21),
        bytes((g("esm_class") or 0, g("protocol_id") or 0, g("priority_flag") or 0)),
        _cstr(g("schedule_delivery_time"), 17),
        _cstr(g("validity_period"), 17),
        bytes((g("registered_delivery") or 0, g("replace_if_present_flag") or 0,
               g("data_coding") or 0, g("sm_default_msg_id") or 0, len(sm))),
        sm,
    ))
