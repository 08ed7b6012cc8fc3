"""Value objects of the ESME session (sms/esme_types.py) against the code they replaced,
kept here as the oracles: the one-call dedup_key, build_receipt reading one id once, and
normalise_message_id without regexes."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sms.esme_types import MESSAGE_STATES, _dedup_key_general, build_receipt, dedup_key
from sms.pdu import Pdu, decode_pdu, encode_pdu, normalise_message_id, parse_receipt_text
from tests.sms.test_pdu_codec import field_values, smpplib_encode

# --- dedup_key ----------------------------------------------------------------------------------


def old_dedup_key(pdu: Pdu) -> str:  # before the one-call shortcut, verbatim
    h = hashlib.sha256()
    for name in ("source_addr", "destination_addr", "esm_class", "data_coding",
                 "short_message", "message_payload", "sar_msg_ref_num",
                 "sar_total_segments", "sar_segment_seqnum"):
        value = pdu.get(name)
        h.update(name.encode() + b"=" + (value if isinstance(value, bytes) else
                                          str(value).encode("utf-8")) + b";")
    return h.hexdigest()[:32]


any_value = st.none() | st.integers(0, 255) | st.text(max_size=8) | st.binary(max_size=8)


@settings(max_examples=1000, deadline=None)
@given(st.dictionaries(st.sampled_from(["source_addr", "destination_addr", "esm_class",
                                        "data_coding", "short_message", "message_payload",
                                        "sar_msg_ref_num", "sar_total_segments",
                                        "sar_segment_seqnum", "priority_flag"]), any_value))
def test_dedup_key_is_the_old_key_for_any_fields(params):
    pdu = Pdu("deliver_sm", 5, 0, 1, params, {})
    assert dedup_key(pdu) == old_dedup_key(pdu) == _dedup_key_general(pdu)


@settings(max_examples=500, deadline=None)
@given(field_values("deliver_sm"), st.integers(1, 0x7FFFFFFF), st.integers(1, 0x7FFFFFFF))
def test_dedup_key_of_a_decoded_deliver_sm_is_the_old_key_and_ignores_the_header(values, s1,
                                                                                  s2):
    first = decode_pdu(smpplib_encode("deliver_sm", s1, 0, **values))
    again = decode_pdu(smpplib_encode("deliver_sm", s2, 0, **values))  # a redelivery
    assert dedup_key(first) == old_dedup_key(first) == dedup_key(again)
    other = dict(values, data_coding=(values.get("data_coding", 0) + 1) % 256)
    assert dedup_key(decode_pdu(smpplib_encode("deliver_sm", s1, 0, **other))) != dedup_key(
        first)


def test_dedup_key_is_pinned():  # keys stored before this version must still match
    pdu = decode_pdu(encode_pdu("deliver_sm", 3, source_addr="13800138000",
                                destination_addr="10086", data_coding=8,
                                short_message="积分".encode("utf-16-be")))
    # computed by the code before this change (at 31dd45a)
    assert dedup_key(pdu) == old_dedup_key(pdu) == "b982e9e83bd73ed55f7b3c53e5edc54e"


# --- receipts -----------------------------------------------------------------------------------


def old_build_receipt_ids(pdu: Pdu) -> tuple[str, frozenset[str], str | None]:
    """message_id, id_keys and stat as build_receipt computed them before."""
    raw = pdu.get("short_message") or pdu.get("message_payload") or b""
    fields = parse_receipt_text(raw.decode("latin-1"))
    tlv_id = pdu.get("receipted_message_id")
    message_id = tlv_id or (fields.id if fields else "")
    keys: frozenset[str] = frozenset()
    for candidate in (tlv_id, fields.id if fields else None):
        if candidate:
            keys |= normalise_message_id(candidate)
    state = pdu.get("message_state")
    stat = (fields.stat.upper() if fields and fields.stat else None) or MESSAGE_STATES.get(state)
    return message_id, keys, stat


receipt_id = st.sampled_from(["", "0a1b", "00A1B", "6699", "06699", "x-1", " 42 "]) | st.text(
    "0123456789abcdefxyz", max_size=10)


@settings(max_examples=1000, deadline=None)
@given(st.none() | receipt_id, st.none() | receipt_id, st.none() | st.integers(0, 9),
       st.sampled_from(["DELIVRD", "undeliv", ""]))
def test_build_receipt_reads_the_ids_as_before(tlv_id, text_id, state, stat):
    params: dict[str, Any] = {"esm_class": 4, "source_addr": "13800138000"}
    if text_id is not None:
        params["short_message"] = (f"id:{text_id} sub:001 dlvrd:001 submit date:2612060310 "
                                   f"done date:2612060311 stat:{stat} err:000 text:").encode()
    if tlv_id is not None:
        params["receipted_message_id"] = tlv_id
    if state is not None:
        params["message_state"] = state
    pdu = Pdu("deliver_sm", 5, 0, 1, params, {})
    receipt = build_receipt(pdu)
    assert (receipt.message_id, receipt.id_keys, receipt.stat) == old_build_receipt_ids(pdu)


# --- normalise_message_id -----------------------------------------------------------------------

_DEC = re.compile(r"[0-9]+")
_HEX = re.compile(r"[0-9a-f]+")


def old_normalise_message_id(message_id: str, hint: str = "auto") -> frozenset[str]:
    s = message_id.strip().strip("\0").strip().lower()
    if hint == "dec" and _DEC.fullmatch(s):
        return frozenset({str(int(s, 10))})
    if hint == "hex" and _HEX.fullmatch(s):
        return frozenset({str(int(s, 16))})
    if _DEC.fullmatch(s):
        return frozenset({str(int(s, 10)), str(int(s, 16))})
    if _HEX.fullmatch(s):
        return frozenset({str(int(s, 16))})
    return frozenset({"s:" + s})


@settings(max_examples=2000, deadline=None)
@given(st.text("0123456789abcdefABCDEFxg-\0 \t\u0660\u00b2\uff11", max_size=12) | st.text(
    max_size=6), st.sampled_from(["auto", "dec", "hex"]))
def test_normalise_message_id_without_regexes_is_the_old_one(message_id, hint):
    assert normalise_message_id(message_id, hint) == old_normalise_message_id(message_id, hint)
