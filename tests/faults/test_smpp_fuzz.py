"""SMPP fuzzing: generated PDUs from a raw TCP "SMSC" to a bound ESMEService, and generated
text through the SMS coding functions.

The ESME's specified answers (sms/esme_protocol.py, pinned here):

- command_length outside 16..65536: generic_nack ESME_RINVCMDLEN (0x02) with the header's
  sequence, then the connection is closed (no resync is possible) and the service rebinds;
- a response PDU (command_id bit 31 set), known or not, garbled or not: never answered;
- a request command_id other than the ten SMPP 3.4 requests it decodes: generic_nack
  ESME_RINVCMDID (0x03);
- a known request whose body does not decode: generic_nack ESME_RINVOPTPARSTREAM (0xC0) when
  the TLV part is broken, else ESME_RINVMSGLEN (0x01);
- enquire_link -> enquire_link_resp; deliver_sm / data_sm -> *_resp with on_deliver's status;
  unbind -> unbind_resp then close and rebind; alert_notification -> nothing; any other
  request (bind_*, submit_sm, query_sm sent by the SMSC) -> generic_nack ESME_RINVCMDID.

After every PDU the session still answers (an enquire_link barrier), and after every example
it still takes an MO message.
"""

from __future__ import annotations

import struct
from dataclasses import replace

import pytest
import pytest_twisted
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from twisted.internet import defer, endpoints, reactor

from sms.encoding import (
    ESM_UDHI,
    MessageTooLong,
    Reassembler,
    decode_payload,
    decode_short_message,
    split_message,
)
from sms.pdu import (
    ESME_RINVCMDID,
    ESME_RINVCMDLEN,
    ESME_RINVMSGLEN,
    ESME_RINVOPTPARSTREAM,
    DecodeError,
    decode_pdu,
    encode_pdu,
)
from sms.session import ESMEService
from tests.faults.conftest import Cfg, Hub, Inbox, examples, sleep, wait_until

# The SMPP 3.4 request ids the ESME decodes (spec values, section 5.1.2.1).
REQUESTS = {0x01: "bind_receiver", 0x02: "bind_transmitter", 0x03: "query_sm",
            0x04: "submit_sm", 0x05: "deliver_sm", 0x06: "unbind", 0x09: "bind_transceiver",
            0x15: "enquire_link", 0x102: "alert_notification", 0x103: "data_sm"}
OTHER_KNOWN = [0x07, 0x08, 0x0B, 0x21, 0x111, 0x112, 0x113]  # replace, cancel, outbind, ...
RESPONSES = [0x80000000, 0x80000001, 0x80000004, 0x80000005, 0x80000006, 0x80000009,
             0x80000015, 0x80000103, 0x80000021, 0x8000FFFF]


@pytest.fixture(scope="module")
def raw_smsc():
    """A raw SMSC on 127.0.0.1 with an ESMEService bound to it, shared by the examples."""
    hub = Hub()
    port = reactor.listenTCP(0, hub, interface="127.0.0.1")
    inbox = Inbox()
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
    esme = ESMEService(replace(Cfg(), reconnect_min_s=0.005, reconnect_max_s=0.02), endpoint,
                       inbox.on_deliver, inbox.on_receipt, clock=reactor)
    esme.startService()
    yield hub, esme, inbox
    pytest_twisted.blockon(esme.stopService())
    for s in hub.sessions:
        if not s.closed:
            s.transport.abortConnection()
    pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))


# -- the model ----------------------------------------------------------------------------------


def expected(frame: bytes) -> tuple[list[tuple[str, int, int]], bool]:
    """(answers as (command, sequence, status), whether the ESME closes the connection)."""
    length, command_id, _, seq = struct.unpack(">LLLL", frame[:16])
    if not 16 <= length <= 65536:
        return [("generic_nack", seq, ESME_RINVCMDLEN)], True
    if command_id & 0x80000000:
        return [], False
    if command_id not in REQUESTS:
        return [("generic_nack", seq, ESME_RINVCMDID)], False
    try:  # the codec decides whether a body decodes (it is fuzzed on its own in tests/sms)
        pdu = decode_pdu(frame)
    except DecodeError as exc:
        assert exc.status in (ESME_RINVMSGLEN, ESME_RINVOPTPARSTREAM)
        return [("generic_nack", seq, exc.status)], False
    name = REQUESTS[command_id]
    assert pdu.command == name
    if name == "enquire_link":
        return [("enquire_link_resp", seq, 0)], False
    if name == "unbind":
        return [("unbind_resp", seq, 0)], True
    if name in ("deliver_sm", "data_sm"):
        return [(name + "_resp", seq, 0)], False
    if name == "alert_notification":
        return [], False
    return [("generic_nack", seq, ESME_RINVCMDID)], False


# -- generators ---------------------------------------------------------------------------------

_addr = st.text(st.characters(min_codepoint=0x30, max_codepoint=0x39), max_size=20)


@st.composite
def valid_body(draw, command: str) -> bytes:
    fields = dict(source_addr=draw(_addr), destination_addr=draw(_addr))
    if command in ("deliver_sm", "submit_sm"):
        fields.update(short_message=draw(st.binary(max_size=160)),
                      data_coding=draw(st.sampled_from([0, 1, 3, 4, 8, 0xF0, 0x11, 0x19])),
                      esm_class=draw(st.sampled_from([0, 0x04, 0x08, 0x20, 0x40, 0x44])))
    elif command == "data_sm":
        fields.update(data_coding=draw(st.sampled_from([0, 8])),
                      message_payload=draw(st.binary(max_size=100)))
    elif command in ("enquire_link", "unbind"):
        fields = {}
    elif command.startswith("bind"):
        fields = dict(system_id="x", password="y")
    elif command == "alert_notification":
        fields = dict(source_addr=fields["source_addr"], esme_addr=fields["destination_addr"])
    elif command == "query_sm":
        fields = dict(message_id="1a2b", source_addr=fields["source_addr"])
    return encode_pdu(command, 1, **fields)[16:]


_TLVS = [0x0424, 0x020C, 0x020E, 0x020F, 0x001E, 0x0427, 0x0005, 0x1403, 0xFFFF]


@st.composite
def tlv_tail(draw) -> bytes:
    """Zero or more TLVs, the last one possibly truncated (declared length > bytes left)."""
    out = b""
    for _ in range(draw(st.integers(0, 3))):
        value = draw(st.binary(max_size=8))
        out += struct.pack(">HH", draw(st.sampled_from(_TLVS)), len(value)) + value
    kind = draw(st.sampled_from(["none", "short-header", "short-value"]))
    if kind == "short-header":
        out += draw(st.binary(min_size=1, max_size=3))
    elif kind == "short-value":
        value = draw(st.binary(max_size=4))
        out += struct.pack(">HH", draw(st.sampled_from(_TLVS)), len(value) + 1 + draw(
            st.integers(0, 100))) + value
    return out


def _frame(command_id: int, seq: int, body: bytes, status: int = 0) -> bytes:
    return struct.pack(">LLLL", 16 + len(body), command_id, status, seq) + body


@st.composite
def pdu_frame(draw) -> bytes:
    seq = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.integers(0, 7))
    if kind <= 2:  # a known request: valid body, + broken TLVs, or truncated, or random
        command_id = draw(st.sampled_from(sorted(REQUESTS)))
        body = draw(valid_body(REQUESTS[command_id]))
        how = draw(st.sampled_from(["valid", "tlv", "cut", "random", "extra"]))
        if how == "tlv":
            body += draw(tlv_tail())
        elif how == "cut":
            body = body[: draw(st.integers(0, len(body)))]
        elif how == "random":
            body = draw(st.binary(max_size=120))
        elif how == "extra":
            body += draw(st.binary(min_size=1, max_size=20))
        event(f"request {how}")
        return _frame(command_id, seq, body)
    if kind == 3:
        event("other known request")
        return _frame(draw(st.sampled_from(OTHER_KNOWN)), seq, draw(st.binary(max_size=40)))
    if kind == 4:
        event("response")
        return _frame(draw(st.sampled_from(RESPONSES)), seq, draw(st.binary(max_size=40)),
                      draw(st.sampled_from([0, 0x58, 0xFFFFFFFF])))
    if kind == 5:
        event("random command id")
        return _frame(draw(st.integers(0, 2**32 - 1)), seq, draw(st.binary(max_size=40)))
    if kind == 6:
        event("bad length")
        length = draw(st.one_of(st.integers(0, 15), st.integers(65537, 2**32 - 1)))
        return struct.pack(">LLLL", length, draw(st.sampled_from([4, 5, 0x80000004])), 0, seq)
    event("known request, junk TLVs")
    body = draw(valid_body("deliver_sm")) + draw(tlv_tail())
    return _frame(0x05, seq, body)


# -- ESME over TCP --------------------------------------------------------------------------------


async def _check_frames(raw_smsc, frames: list[bytes]) -> None:
    hub, esme, inbox = raw_smsc
    for frame in frames:
        session = await hub.session()
        want, drops = expected(frame)
        answers, closed = await session.exchange(frame)
        got = [(p.command, p.sequence, p.status) for p in answers]
        if drops and want[0][0] == "unbind_resp":
            # The barrier may still be answered: it was in the same read as the unbind.
            assert got == want
            await wait_until(lambda s=session: s.closed, timeout=3)
        elif drops:
            assert got == want and closed  # bad length: nack, then the connection is closed
        else:
            assert got == want and not closed
    # The session, or its replacement, still takes an MO message.
    session = await hub.session()
    await wait_until(lambda: esme.bound, timeout=3)
    n = len(inbox.mo)
    seq = session.next_seq()
    answers, closed = await session.exchange(encode_pdu(
        "deliver_sm", seq, source_addr="13812345678", destination_addr="10086",
        short_message=b"JF"))
    assert not closed
    assert [(p.command, p.sequence, p.status) for p in answers] == [("deliver_sm_resp", seq, 0)]
    assert [m.text for m in inbox.mo[n:]] == ["JF"]


@given(st.lists(pdu_frame(), min_size=1, max_size=4))
@settings(max_examples=examples(60), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@pytest_twisted.ensureDeferred
async def test_generated_pdus_get_their_specified_answer(raw_smsc, frames):
    await _check_frames(raw_smsc, frames)


def _deliver(seq: int = 7) -> bytes:
    return encode_pdu("deliver_sm", seq, source_addr="1", destination_addr="2",
                      short_message=b"hello")


PINNED = {
    "unknown command id": (_frame(0x0000FFFF, 9, b""), ESME_RINVCMDID),
    "outbind": (_frame(0x0B, 9, b"a\0b\0"), ESME_RINVCMDID),
    "submit_sm from the SMSC": (encode_pdu("submit_sm", 9, destination_addr="1",
                                           short_message=b"x"), ESME_RINVCMDID),
    "bind from the SMSC": (encode_pdu("bind_transceiver", 9, system_id="a", password="b"),
                           ESME_RINVCMDID),
    "truncated TLV value": (_frame(5, 9, _deliver()[16:] + b"\x04\x24\x00\x10ab"),
                            ESME_RINVOPTPARSTREAM),
    "truncated TLV header": (_frame(5, 9, _deliver()[16:] + b"\x04"), ESME_RINVOPTPARSTREAM),
    "unterminated C-string": (_frame(5, 9, b"\0\0\0" + b"1" * 30), ESME_RINVMSGLEN),
    "sm_length past the end": (_frame(5, 9, _deliver()[16:-3]), ESME_RINVMSGLEN),
    "length below 16": (struct.pack(">LLLL", 8, 5, 0, 9), ESME_RINVCMDLEN),
    "length above 64 KiB": (struct.pack(">LLLL", 65537, 5, 0, 9), ESME_RINVCMDLEN),
}


@pytest.mark.parametrize("case", sorted(PINNED))
@pytest_twisted.ensureDeferred
async def test_pinned_garbage_answers(raw_smsc, case):
    frame, status = PINNED[case]
    want, _ = expected(frame)
    assert want == [("generic_nack", 9, status)]  # the model agrees with the pinned value
    await _check_frames(raw_smsc, [frame])


@pytest_twisted.ensureDeferred
async def test_responses_and_alerts_are_never_answered(raw_smsc):
    frames = [_frame(c, 9, b"junk\0") for c in RESPONSES] + [
        encode_pdu("alert_notification", 9, source_addr="1", esme_addr="2")]
    for frame in frames:
        assert expected(frame) == ([], False)
    await _check_frames(raw_smsc, frames)


@pytest_twisted.ensureDeferred
async def test_a_byte_stream_split_anywhere_is_framed_the_same(raw_smsc):
    """The same PDUs trickled one byte at a time get the same answers."""
    hub, esme, inbox = raw_smsc
    session = await hub.session()
    frames = [_frame(0xFFFF, 11, b""), _deliver(12), encode_pdu("enquire_link", 13),
              _frame(5, 14, _deliver()[16:] + b"\x04")]
    stream = b"".join(frames)
    session.got.clear()
    for i in range(len(stream)):
        session.transport.write(stream[i:i + 1])
        if i % 7 == 0:
            await sleep(0)
    await wait_until(lambda: len(session.got) == 4, timeout=3)
    assert [(p.command, p.sequence, p.status) for p in session.got] == [
        ("generic_nack", 11, ESME_RINVCMDID), ("deliver_sm_resp", 12, 0),
        ("enquire_link_resp", 13, 0), ("generic_nack", 14, ESME_RINVOPTPARSTREAM)]
    assert not session.closed


# -- text coding ----------------------------------------------------------------------------------

_GSM = ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
        "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
_EXT = "\x0c^{}\\[~]|€"
_text = st.one_of(
    st.text(st.sampled_from(_GSM + _EXT), max_size=700),  # GSM with escapes
    st.text(st.sampled_from(_GSM + _EXT + "积分兑换😀👍🏽é\u0301"), max_size=500),
    st.text(max_size=400),  # any Unicode scalar value (hypothesis leaves surrogates out)
)


def _septets(ch: str) -> int:
    return 2 if ch in _EXT else 1


def _needed_parts(text: str) -> int:
    """Parts needed: whole characters packed greedily (an escape or a surrogate pair is one
    unit of 2), 160/153 septets in GSM, 70/67 UTF-16 code units in UCS-2."""
    gsm = all(ch in _GSM or ch in _EXT for ch in text)
    sizes = [_septets(ch) if gsm else len(ch.encode("utf-16-be")) // 2 for ch in text]
    single, per_part = (160, 153) if gsm else (70, 67)
    if sum(sizes) <= single:
        return 1
    parts, used = 1, 0
    for size in sizes:
        if used + size > per_part:
            parts, used = parts + 1, 0
        used += size
    return parts


@given(_text, st.integers(1, 8), st.integers(0, 255), st.randoms(use_true_random=False))
@settings(max_examples=examples(400), deadline=None)
def test_split_message_parts_reassemble_exactly(text, max_parts, ref, rnd):
    needed = _needed_parts(text)
    if needed > max_parts:
        with pytest.raises(MessageTooLong):
            split_message(text, max_parts, ref=ref)
        return
    parts = split_message(text, max_parts, ref=ref)
    assert len(parts) == needed
    assert "".join(p.text for p in parts) == text
    gsm = all(ch in _GSM or ch in _EXT for ch in text)
    for seq, p in enumerate(parts, start=1):
        assert p.data_coding == (0 if gsm else 8)
        if len(parts) == 1:
            assert p.esm_class == 0
            payload = p.short_message
            assert len(payload) <= (160 if gsm else 140)
        else:
            assert p.esm_class == ESM_UDHI
            assert p.short_message[:6] == bytes([5, 0, 3, ref, len(parts), seq])
            payload = p.short_message[6:]
            assert len(payload) <= (153 if gsm else 134)
        if gsm:  # unpacked septets, never ending inside an escape sequence
            assert all(b <= 0x7F for b in payload) and not payload.endswith(b"\x1b")
            assert decode_payload(0, payload) == p.text
        else:  # whole UTF-16 code unit pairs: strict decoding fails on a split surrogate
            assert payload.decode("utf-16-be", errors="strict") == p.text
    # What a handset (or the simulator) does with the parts, in any order: the same text.
    reassembler = Reassembler()
    order = list(range(len(parts)))
    rnd.shuffle(order)
    results = []
    for i in order:
        p = parts[i]
        decoded = decode_short_message(p.data_coding, p.esm_class, p.short_message)
        results.append(reassembler.add("13812345678", decoded, 0.0))
    assert results[-1] == text and all(r is None for r in results[:-1])
    assert len(reassembler) == 0


def test_lone_surrogates_are_refused_as_value_errors():
    # Not Unicode text (no UTF-16 encoding exists), so not a message: a ValueError, which
    # ESMEProtocol.submit turns into a failed Deferred.
    with pytest.raises(ValueError):
        split_message("abc\ud800")


_sar = st.one_of(st.none(), st.integers(0, 2**32 - 1), st.integers(0, 4))


@given(st.integers(0, 255), st.integers(0, 255), st.one_of(st.none(), st.binary(max_size=300)),
       st.one_of(st.none(), st.binary(max_size=300)), _sar, _sar, _sar)
@settings(max_examples=examples(600), deadline=None)
def test_decode_short_message_never_raises(dc, esm, sm, payload, ref, total, seq):
    decoded = decode_short_message(dc, esm, sm, message_payload=payload, sar_msg_ref_num=ref,
                                   sar_total_segments=total, sar_segment_seqnum=seq)
    assert isinstance(decoded.text, str)
    if decoded.concat is not None:
        assert 1 <= decoded.concat.seq <= decoded.concat.total and decoded.concat.total > 1
    Reassembler(timeout_s=10).add("1", decoded, 0.0)  # never raises either


@given(st.lists(st.tuples(st.sampled_from(["1", "2"]), st.integers(0, 255), st.integers(0, 3),
                          st.integers(0, 4), st.binary(max_size=20)), max_size=30))
@settings(max_examples=examples(300), deadline=None)
def test_reassembler_takes_any_mix_of_parts(parts):
    r = Reassembler(timeout_s=5, max_pending=4)
    now = 0.0
    for source, ref, total, seq, data in parts:
        decoded = decode_short_message(8, ESM_UDHI, bytes([5, 0, 3, ref, total, seq]) + data)
        text = r.add(source, decoded, now)
        assert text is None or isinstance(text, str)
        assert len(r) <= 4
        now += 0.5
    r.expire(now + 100)
    assert len(r) == 0
