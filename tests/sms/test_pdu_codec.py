"""The compiled PDU codec (sms/pdu.py) against smpplib itself, the oracle.

Encoding: for every command and generated field values, the bytes equal smpplib's
``make_pdu(...).generate()``. Decoding: for generated valid PDUs and for generated garbage
bodies, the outcome equals smpplib's parser behind the bounds checks sms/pdu.py used to wrap it
with (same fields and values, or a DecodeError with the same command_status).
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from smpplib import command_codes, consts, smpp
from smpplib.ptypes import flag, ostr

from sms.pdu import (
    _NAME_BY_ID,
    _SPECS,
    _STUB,
    _SUPPORTED,
    _TLV_NAME,
    ESME_RINVMSGLEN,
    ESME_RINVOPTPARSTREAM,
    DecodeError,
    Pdu,
    decode_pdu,
    encode_pdu,
)
from sms.receipt_text import _scan_receipt_text, parse_receipt_text

COMMANDS = sorted(_SUPPORTED)
ENCODABLE = sorted(name for name in COMMANDS if _SPECS[name].encodable)


# --- the oracle ---------------------------------------------------------------------------------


def smpplib_encode(command: str, sequence: int, status: int, **params: Any) -> bytes:
    p = smpp.make_pdu(command, client=_STUB, **{k: v for k, v in params.items()
                                                 if v is not None})
    p.sequence = sequence
    p.status = status
    return p.generate()


def smpplib_decode(frame: bytes) -> Pdu:
    """smpplib's parser, kept from overrunning (mandatory fields pre-walked with bounds checks)
    and with a TLV walker that honours lengths and keeps unknown tags raw."""
    length, command_id, status, sequence = struct.unpack(">LLLL", frame[:16])
    name = _NAME_BY_ID[command_id]
    p = smpp.make_pdu(name, client=_STUB, allow_unknown_opt_params=True)
    known: dict[str, Any] = {}
    unknown: dict[int, bytes] = {}

    def walk_tlvs(data: bytes) -> None:
        pos = 0
        while pos < len(data):
            if pos + 4 > len(data):
                raise ValueError("truncated TLV header")
            tag, size = struct.unpack(">HH", data[pos:pos + 4])
            value = bytes(data[pos + 4:pos + 4 + size])
            if len(value) < size:
                raise ValueError(f"truncated TLV 0x{tag:04x}")
            pos += 4 + size
            tname = _TLV_NAME.get(tag)
            param = p.params.get(tname) if tname else None
            if param is None:
                unknown[tag] = value
            elif param.type is int:
                known[tname] = int.from_bytes(value, "big") if value else None
            elif param.type is str:
                known[tname] = value.split(b"\0", 1)[0].decode("latin-1")
            elif param.type is flag:
                known[tname] = True
            else:
                known[tname] = value

    def check_mandatory(body: bytes) -> None:
        pos, ints = 0, {}
        for fname in p.params_order:
            if pos == len(body) or p.field_is_optional(fname):
                return
            param = p.params[fname]
            if param.type is int:
                if pos + param.size > len(body):
                    raise ValueError(f"truncated {fname}")
                ints[fname] = int.from_bytes(body[pos:pos + param.size], "big")
                pos += param.size
            elif param.type is str:
                end = body.find(b"\0", pos)
                if end < 0:
                    raise ValueError(f"unterminated {fname}")
                pos = end + 1
            elif param.type is ostr:
                pos += ints.get(param.len_field, 0)
                if pos > len(body):
                    raise ValueError(f"truncated {fname}")

    p.parse_optional_params = walk_tlvs
    try:
        check_mandatory(frame[16:])
        p.parse(frame)
    except Exception as exc:
        status_ = ESME_RINVOPTPARSTREAM if "TLV" in str(exc) else ESME_RINVMSGLEN
        raise DecodeError(str(exc), command_id=command_id, sequence=sequence,
                          status=status_) from exc
    params: dict[str, Any] = {}
    for fname in p.params_order:
        value = known[fname] if fname in known else getattr(p, fname, None)
        if value is None:
            continue
        if p.params[fname].type is str and isinstance(value, bytes):
            value = value.decode("latin-1")
        params[fname] = value
    sm = params.get("short_message")
    if sm is not None and params.get("sm_length", len(sm)) != len(sm):
        raise DecodeError("sm_length mismatch", command_id=command_id, sequence=sequence,
                          status=ESME_RINVMSGLEN)
    return Pdu(name, command_id, status, sequence, params, unknown)


def outcome(decode: Any, frame: bytes) -> Any:
    try:
        pdu = decode(frame)
    except DecodeError as exc:
        return ("error", exc.status, exc.sequence)
    return ("pdu", pdu.command, pdu.status, pdu.sequence, dict(pdu.params),
            dict(pdu.unknown_tlvs))


# --- strategies ---------------------------------------------------------------------------------

ascii_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=45)


@st.composite
def field_values(draw: Any, command: str) -> dict[str, Any]:
    p = smpp.make_pdu(command, client=_STUB)
    values: dict[str, Any] = {}
    for fname in p.params_order:
        param = p.params[fname]
        optional = p.field_is_optional(fname)
        if fname in ("sm_length", "message_payload") or (optional and draw(st.booleans())):
            continue
        if param.type is int:
            values[fname] = draw(st.integers(0, 2 ** (8 * param.size) - 1))
        elif param.type is str:
            values[fname] = draw(ascii_text)
        elif param.type is ostr:
            values[fname] = draw(st.binary(max_size=254))
        elif param.type is flag:
            values[fname] = True
    if "message_payload" in p.params and not values.get("short_message") and draw(st.booleans()):
        values["message_payload"] = draw(st.binary(min_size=1, max_size=400))
    return values


@st.composite
def encoded(draw: Any) -> tuple[str, int, int, dict[str, Any]]:
    command = draw(st.sampled_from(ENCODABLE))
    return (command, draw(st.integers(1, 0x7FFFFFFF)), draw(st.sampled_from([0, 0x58, 0x45])),
            draw(field_values(command)))


# --- tests --------------------------------------------------------------------------------------


@settings(max_examples=600, deadline=None)
@given(encoded())
def test_encoding_is_byte_for_byte_smpplibs(case):
    command, sequence, status, values = case
    assert encode_pdu(command, sequence, status, **values) == smpplib_encode(
        command, sequence, status, **values)


@settings(max_examples=600, deadline=None)
@given(encoded())
def test_decoding_a_valid_pdu_gives_smpplibs_fields(case):
    command, sequence, status, values = case
    frame = smpplib_encode(command, sequence, status, **values)
    assert outcome(decode_pdu, frame) == outcome(smpplib_decode, frame)
    pdu = decode_pdu(frame)
    assert pdu.command == command and pdu.sequence == sequence and pdu.status == status


@st.composite
def garbage(draw: Any) -> bytes:
    command = draw(st.sampled_from(COMMANDS))
    bodies = [st.binary(max_size=120)]
    if command in ENCODABLE:  # a valid start cut short, or with junk TLVs after it
        bodies.append(field_values(command).map(
            lambda v: smpplib_encode(command, 1, 0, **v)[16:]).flatmap(
            lambda b: st.tuples(st.integers(0, len(b)), st.binary(max_size=12)).map(
                lambda cut: b[:cut[0]] + cut[1])))
    body = draw(st.one_of(*bodies))
    head = struct.pack(">LLLL", 16 + len(body), command_codes.get_command_code(command), 0,
                       draw(st.integers(1, 0x7FFFFFFF)))
    return head + body


@settings(max_examples=1500, deadline=None)
@given(garbage())
def test_decoding_garbage_fails_or_succeeds_as_smpplib_does(frame):
    assert outcome(decode_pdu, frame) == outcome(smpplib_decode, frame)


def test_a_submit_sm_the_esme_sends_is_what_smpplib_would_send():
    params = dict(source_addr="10086", source_addr_ton=3, source_addr_npi=0, dest_addr_ton=0,
                  dest_addr_npi=1, destination_addr="13800138000", registered_delivery=1,
                  esm_class=0x40, data_coding=8, short_message=b"\x05\x00\x03\x07\x02\x01" +
                  "积分".encode("utf-16-be"))
    frame = encode_pdu("submit_sm", 42, **params)
    assert frame == smpplib_encode("submit_sm", 42, 0, **params)
    assert frame[:16] == struct.pack(">LLLL", len(frame), 0x00000004, 0, 42)
    assert decode_pdu(frame).get("short_message") == params["short_message"]


def test_bind_always_says_interface_version_3_4_as_smpplib_does():
    frame = encode_pdu("bind_transceiver", 1, system_id="loyalty", password="secret",
                       interface_version=0x50)
    assert frame == smpplib_encode("bind_transceiver", 1, 0, system_id="loyalty",
                                   password="secret")
    assert decode_pdu(frame).get("interface_version") == consts.SMPP_VERSION_34


def test_query_sm_is_left_to_smpplib():
    assert not _SPECS["query_sm"].encodable
    with pytest.raises(ValueError):
        encode_pdu("query_sm", 1)  # smpplib's own check: message_id is mandatory
    frame = encode_pdu("query_sm", 7, message_id="abc", source_addr="10086")
    assert decode_pdu(frame).get("message_id") == "abc"


def test_tlvs_are_read_by_their_own_length_and_unknown_ones_kept():
    body = smpplib_encode("deliver_sm", 1, 0, source_addr="13800138000",
                          destination_addr="10086", short_message=b"JF")[16:]
    body += struct.pack(">HH", 0x020C, 0)  # sar_msg_ref_num with no value: absent
    body += struct.pack(">HHH", 0x020E, 2, 3)  # sar_total_segments (1 byte) sent as 2 bytes
    body += struct.pack(">HH", 0x1403, 3) + b"abc"  # a vendor tag
    frame = struct.pack(">LLLL", 16 + len(body), 0x00000005, 0, 9) + body
    assert outcome(decode_pdu, frame) == outcome(smpplib_decode, frame)
    pdu = decode_pdu(frame)
    assert "sar_msg_ref_num" not in pdu.params
    assert pdu.get("sar_total_segments") == 3
    assert pdu.unknown_tlvs == {0x1403: b"abc"}


receipt_value = st.one_of(st.text("0123456789abcdefABCDEF", max_size=12),
                          st.sampled_from(["DELIVRD", "UNDELIV", "", "a:b", " x", "id:7"]))


@settings(max_examples=1000, deadline=None)
@given(st.lists(receipt_value, min_size=8, max_size=8), st.sampled_from(["id", "ID", "Id"]),
       st.sampled_from([" text:", " Text:", " text: hello world ", "", " junk"]))
def test_the_canonical_receipt_shortcut_reads_what_the_general_scan_reads(values, id_key, tail):
    rid, sub, dlvrd, sd, dd, stat, err, _ = values
    s = (f"{id_key}:{rid} sub:{sub} dlvrd:{dlvrd} submit date:{sd} done date:{dd} "
         f"stat:{stat} err:{err}{tail}")
    assert parse_receipt_text(s) == _scan_receipt_text(s)


@pytest.mark.parametrize("command", ENCODABLE)
def test_a_command_without_parameters_is_smpplibs_for_every_sequence_and_status(command):
    # encode_pdu keeps the body of each command sent bare (deliver_sm_resp, enquire_link_resp
    # ...): twice, and with other headers, it is still what smpplib sends.
    for sequence, status in ((1, 0), (0x7FFFFFFF, 0x58), (12345, 0x64)):
        for _ in range(2):
            assert encode_pdu(command, sequence, status) == smpplib_encode(
                command, sequence, status)
