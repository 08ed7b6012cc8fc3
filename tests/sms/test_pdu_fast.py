"""The hand-written paths of the SMS round trip against the general ones they shortcut.

sms/pdu_fast.py (deliver_sm / submit_sm and their answers) against the compiled-table walk of
sms/pdu.py, which tests/sms/test_pdu_codec.py holds to smpplib; the PduReader slicing frames by
offset against the bytearray reader it replaced (kept here as the oracle).
"""

from __future__ import annotations

import struct
from contextlib import contextmanager
from typing import Any
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

import sms.pdu
from sms.pdu import MAX_PDU_LEN, MIN_PDU_LEN, BadFrame, PduReader, decode_pdu, encode_pdu
from sms.pdu_fast import SM_FIELDS
from tests.sms.test_pdu_codec import field_values, outcome, smpplib_encode

HOT = ["deliver_sm", "submit_sm", "submit_sm_resp", "deliver_sm_resp"]


@contextmanager
def general_paths_only():
    with mock.patch.dict(sms.pdu._FAST_DECODE, clear=True), \
            mock.patch.dict(sms.pdu._SM_LAYOUT, clear=True):
        yield


def general_outcome(frame: bytes) -> Any:
    with general_paths_only():
        return outcome(decode_pdu, frame)


# --- decoding -----------------------------------------------------------------------------------


@st.composite
def hot_frames(draw: Any) -> bytes:
    """A valid PDU of a hot command, as smpplib writes it, maybe cut short, maybe with junk or
    TLVs (known, unknown, broken) after it."""
    command = draw(st.sampled_from(HOT))
    body = smpplib_encode(command, 1, 0, **draw(field_values(command)))[16:]
    cut = draw(st.integers(0, len(body)) | st.just(len(body)))
    tail = draw(st.sampled_from([
        b"", b"\0", struct.pack(">HH", 0x1403, 3) + b"abc", struct.pack(">HHB", 0x020E, 1, 3),
        struct.pack(">HH", 0x020C, 0), struct.pack(">HH", 0x0424, 5) + b"xy",
        struct.pack(">HH", 0x001E, 4) + b"ab\0c", b"\x02"]) | st.binary(max_size=12))
    body = body[:cut] + tail
    code = sms.pdu._SPECS[command].command_id
    return struct.pack(">LLLL", 16 + len(body), code, draw(st.sampled_from([0, 0x58])),
                       draw(st.integers(1, 0x7FFFFFFF))) + body


@settings(max_examples=2000, deadline=None)
@given(hot_frames())
def test_the_fast_decoders_read_what_the_general_walk_reads(frame):
    assert outcome(decode_pdu, frame) == general_outcome(frame)


def test_an_ordinary_deliver_sm_and_submit_sm_resp_take_the_fast_path():
    frames = [encode_pdu("deliver_sm", 7, source_addr="13800138000", destination_addr="10086",
                         short_message=b"JF", receipted_message_id="ab12", message_state=2),
              encode_pdu("submit_sm_resp", 8, message_id="ab12"),
              encode_pdu("submit_sm_resp", 9, 0x58),
              struct.pack(">LLLL", 16, 0x80000004, 0x58, 10)]  # an error without a body
    with mock.patch.object(sms.pdu, "_parse_body", side_effect=AssertionError("slow path")):
        pdus = [decode_pdu(f) for f in frames]
    assert pdus[0].params["receipted_message_id"] == "ab12"
    assert pdus[0].params["short_message"] == b"JF"
    assert [p.params for p in pdus[1:]] == [{"message_id": "ab12"}, {"message_id": ""}, {}]


def test_a_deliver_sm_without_a_short_message_has_none_as_before():
    # The body ends after sm_length 0: the general walk stops there (no short_message at
    # all), with a TLV after it short_message is b"".
    frame = smpplib_encode("deliver_sm", 1, 0, source_addr="1", destination_addr="2")
    assert "short_message" not in decode_pdu(frame).params
    assert outcome(decode_pdu, frame) == general_outcome(frame)
    frame = encode_pdu("deliver_sm", 1, source_addr="1", message_payload=b"hello")
    assert decode_pdu(frame).params["short_message"] == b""
    assert outcome(decode_pdu, frame) == general_outcome(frame)


# --- encoding -----------------------------------------------------------------------------------

maybe_text = st.none() | st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF),
                                 max_size=30)
maybe_byte = st.none() | st.integers(0, 255)


@st.composite
def sm_params(draw: Any) -> dict[str, Any]:
    """Mandatory fields of the short message layout, any of them left out or None, strings
    up to past their limits; sometimes a TLV too (the general path's business)."""
    params: dict[str, Any] = {}
    for name in SM_FIELDS:
        if name == "sm_length" or draw(st.booleans()):
            continue
        if name == "short_message":
            params[name] = draw(st.none() | st.binary(max_size=254))
        elif name in ("service_type", "source_addr", "destination_addr",
                      "schedule_delivery_time", "validity_period"):
            params[name] = draw(maybe_text)
        else:
            params[name] = draw(maybe_byte)
    if draw(st.integers(0, 5)) == 0:
        params["sar_msg_ref_num"] = draw(st.integers(0, 0xFFFF))
    return params


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(["submit_sm", "deliver_sm"]), st.integers(1, 0x7FFFFFFF),
       st.sampled_from([0, 0x58]), sm_params())
def test_the_fast_encoder_writes_what_the_general_walk_and_smpplib_write(command, seq, status,
                                                                          params):
    fast = encode_pdu(command, seq, status, **params)
    with general_paths_only():
        assert fast == encode_pdu(command, seq, status, **params)
    assert fast == smpplib_encode(command, seq, status, **params)


# --- framing ------------------------------------------------------------------------------------


class OldPduReader:  # the reader before frames were sliced by offset, verbatim
    def __init__(self, max_len: int = MAX_PDU_LEN):
        self.max_len = max_len
        self._buf = bytearray()
        self.poisoned = False

    def feed(self, data: bytes) -> list[bytes | BadFrame]:
        if self.poisoned:
            return []
        self._buf += data
        out: list[bytes | BadFrame] = []
        while len(self._buf) >= 4:
            (length,) = struct.unpack(">L", self._buf[:4])
            if not MIN_PDU_LEN <= length <= self.max_len:
                self.poisoned = True
                out.append(BadFrame(length, bytes(self._buf[:16])))
                self._buf.clear()
                break
            if len(self._buf) < length:
                break
            out.append(bytes(self._buf[:length]))
            del self._buf[:length]
        return out


frame_or_junk = st.builds(lambda body: struct.pack(">L", 16 + len(body)) + bytes(12) + body,
                          st.binary(max_size=40)) | st.binary(max_size=24)


@settings(max_examples=1000, deadline=None)
@given(st.lists(frame_or_junk, max_size=8).map(b"".join), st.lists(st.integers(0, 60),
                                                                   max_size=10),
       st.sampled_from([MAX_PDU_LEN, 40]))
def test_the_reader_splits_any_stream_in_any_chunks_as_before(stream, cuts, max_len):
    new, old = PduReader(max_len), OldPduReader(max_len)
    pos = 0
    for n in [*cuts, len(stream)]:
        chunk, pos = stream[pos : pos + n], pos + n
        assert new.feed(chunk) == old.feed(chunk)
        assert new.poisoned == old.poisoned
