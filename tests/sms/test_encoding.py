"""Text coding, splitting, MO decoding and reassembly (pure, no reactor)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sms import encoding as enc
from sms.encoding import (
    Concat,
    MessageTooLong,
    Reassembler,
    choose_coding,
    decode_short_message,
    encode_gsm,
    split_message,
)
from sms.pdu import (
    BadFrame,
    PduReader,
    decode_pdu,
    encode_pdu,
    ids_match,
    normalise_message_id,
    parse_receipt_text,
)


def reassemble(parts, source="13812345678", now=0.0):
    r = Reassembler()
    out = None
    for p in parts:
        out = r.add(source, decode_short_message(p.data_coding, p.esm_class, p.short_message), now)
    return out


# -- coding choice ---------------------------------------------------------------------------


def test_choose_coding():
    assert choose_coding("JF") == "gsm"
    assert choose_coding("Price: 5€ [ok] {x} ~^|\\") == "gsm"
    assert choose_coding("Ça coûte") == "ucs2"  # û is not GSM
    assert choose_coding("积分") == "ucs2"
    assert choose_coding("ＪＦ") == "ucs2"  # full-width is not normalised here
    assert choose_coding("hi 😀") == "ucs2"
    assert choose_coding("`") == "ucs2"  # smpplib's table wrongly maps ` to 0x5F (§)


def test_gsm_escape_encoding():
    assert encode_gsm("€") == b"\x1b\x65"
    assert encode_gsm("@") == b"\x00"
    assert encode_gsm("§") == b"\x5f"


# -- boundaries ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,parts",
    [("a" * 160, 1), ("a" * 161, 2), ("a" * 306, 2), ("a" * 307, 3), ("a" * 459, 3),
     ("中" * 70, 1), ("中" * 71, 2), ("中" * 134, 2), ("中" * 135, 3), ("中" * 201, 3)],
)
def test_boundaries(text, parts):
    got = split_message(text)
    assert len(got) == parts
    assert reassemble(got) == text


def test_single_has_no_udh_and_multi_has_udh():
    (one,) = split_message("a" * 160)
    assert one.esm_class == 0 and one.data_coding == 0 and len(one.short_message) == 160
    multi = split_message("a" * 161, ref=0x42)
    assert [p.short_message[:6] for p in multi] == [b"\x05\x00\x03\x42\x02\x01",
                                                    b"\x05\x00\x03\x42\x02\x02"]
    assert all(p.esm_class == 0x40 for p in multi)
    assert len(multi[0].short_message) == 6 + 153
    ucs = split_message("中" * 71)
    assert ucs[0].data_coding == 8 and len(ucs[0].short_message) == 6 + 67 * 2


def test_too_long():
    with pytest.raises(MessageTooLong):
        split_message("a" * 460)
    with pytest.raises(MessageTooLong):
        split_message("中" * 202)
    assert len(split_message("a" * 460, max_parts=4)) == 4


def test_escape_counts_two_and_is_never_split():
    assert len(split_message("€" * 80)) == 1  # 160 septets
    assert len(split_message("a" + "€" * 80)) == 2
    text = "a" * 152 + "€" + "b" * 10  # 164 septets; the escape would straddle 153
    parts = split_message(text)
    assert parts[0].short_message[6:] == b"a" * 152  # moved whole to part 2
    assert parts[1].short_message[6:8] == b"\x1b\x65"
    assert reassemble(parts) == text


def test_surrogate_pair_never_split():
    text = "中" * 66 + "😀" + "中" * 10
    parts = split_message(text)
    assert len(parts) == 2
    assert len(parts[0].short_message) == 6 + 66 * 2  # the emoji did not fit: moved on
    assert parts[1].text.startswith("😀")
    for p in parts:
        p.short_message[6:].decode("utf-16-be")  # strict: no half pair anywhere
    assert reassemble(parts) == text
    assert len(split_message("😀" * 35)) == 1  # 70 code units


@given(st.text(alphabet=st.sampled_from("aZ€[]{}中文😀🎉@é\n "), max_size=200))
@settings(max_examples=200, deadline=None)
def test_split_roundtrip_property(text):
    try:
        parts = split_message(text, max_parts=10)
    except MessageTooLong:
        return
    for p in parts:
        payload = p.short_message[6:] if p.esm_class & 0x40 else p.short_message
        if p.data_coding == 8:
            payload.decode("utf-16-be")  # never a split surrogate pair
            assert len(payload) // 2 <= (67 if len(parts) > 1 else 70)
        else:
            assert not payload.endswith(b"\x1b")  # never a split escape
            assert len(payload) <= (153 if len(parts) > 1 else 160)
    assert reassemble(parts) == text


def test_long_chinese_reply_split_and_reassembled_out_of_order():
    text = ("尊敬的金卡会员，您的积分余额为12,345分，其中1,200分将于2025年12月31日到期。"
            "回复DH加礼品代码兑换礼品，回复MX查询积分明细，回复TD退订到期提醒。") * 2
    parts = split_message(text, ref=7)
    assert len(parts) == 3
    r = Reassembler()
    decoded = [decode_short_message(p.data_coding, p.esm_class, p.short_message) for p in parts]
    assert r.add("138", decoded[2], 0) is None
    assert r.add("138", decoded[0], 0) is None
    assert r.add("138", decoded[0], 0) is None  # duplicate
    assert r.add("138", decoded[1], 0) == text
    assert len(r) == 0


# -- MO decoding -----------------------------------------------------------------------------


def test_decode_codings():
    assert decode_short_message(0, 0, b"JF").text == "JF"
    assert decode_short_message(0, 0, b"\x1b\x65 \x00\x1b\x3c").text == "€ @["
    assert decode_short_message(3, 0, "café".encode("latin-1")).text == "café"
    assert decode_short_message(8, 0, "积分😀".encode("utf-16-be")).text == "积分😀"
    assert decode_short_message(1, 0, b"JF").text == "JF"
    assert decode_short_message(0, 0, "é".encode("latin-1")).text == "é"  # latin-1 fallback
    assert decode_short_message(8, 0, b"\x4e").text == ""  # odd byte dropped, no crash


def test_decode_concat_8_and_16_bit_refs():
    m8 = decode_short_message(0, 0x40, b"\x05\x00\x03\x2a\x02\x01" + b"hi")
    assert m8.text == "hi" and m8.concat == Concat(0x2A, 2, 1)
    m16 = decode_short_message(8, 0x40, b"\x06\x08\x04\x12\x34\x03\x02" + "中".encode("utf-16-be"))
    assert m16.text == "中" and m16.concat == (0x1234, 3, 2)
    other = decode_short_message(0, 0x40, b"\x04\x05\x02\x0b\x84" + b"x")  # port IE only
    assert other.text == "x" and other.concat is None
    bad = decode_short_message(0, 0x40, b"\x05\x00\x03\x01\x02\x05" + b"x")  # seq > total
    assert bad.concat is None
    assert decode_short_message(0, 0x40, b"\xff\x00").text == ""  # UDHL past the end


def test_decode_sar_and_message_payload():
    m = decode_short_message(0, 0, b"", message_payload=b"a" * 300, sar_msg_ref_num=513,
                             sar_total_segments=2, sar_segment_seqnum=2)
    assert m.text == "a" * 300 and m.concat == (513, 2, 2)
    udh_in_payload = decode_short_message(0, 0x40, None,
                                          message_payload=b"\x05\x00\x03\x09\x02\x01ab")
    assert udh_in_payload.text == "ab" and udh_in_payload.concat == (9, 2, 1)


def test_reassembly_joins_pair_split_by_sender_and_expires():
    data = "a😀b".encode("utf-16-be")  # 8 bytes; cut in the middle of the pair
    r = Reassembler(timeout_s=10)
    p1 = decode_short_message(8, 0x40, b"\x05\x00\x03\x01\x02\x01" + data[:4])
    p2 = decode_short_message(8, 0x40, b"\x05\x00\x03\x01\x02\x02" + data[4:])
    assert r.add("1", p1, 0) is None
    assert r.add("1", p2, 5) == "a😀b"
    assert r.add("1", p1, 0) is None
    assert r.expire(11) == 1 and len(r) == 0
    assert r.add("1", p2, 12) is None  # the first half is gone
    assert r.add("2", decode_short_message(0, 0, b"JF"), 12) == "JF"


# -- PDU reader, codec wrapper, receipts, ids ------------------------------------------------


def test_reader_frames_split_and_joined_input():
    a = encode_pdu("enquire_link", 1)
    b = encode_pdu("submit_sm_resp", 2, message_id="abc")
    reader = PduReader()
    stream = a + b
    got = []
    for i in range(len(stream)):
        got += reader.feed(stream[i : i + 1])
    assert got == [a, b]
    assert decode_pdu(b).get("message_id") == "abc"


def test_reader_bad_length_poisons():
    reader = PduReader()
    out = reader.feed(b"\x00\x00\x00\x08" + b"\x00" * 12 + encode_pdu("enquire_link", 1))
    assert len(out) == 1 and isinstance(out[0], BadFrame) and out[0].length == 8
    assert reader.feed(encode_pdu("enquire_link", 2)) == []


@given(st.lists(st.binary(max_size=80), max_size=20))
@settings(max_examples=300, deadline=None)
def test_reader_and_decoder_never_crash_on_garbage(chunks):
    from sms.pdu import DecodeError

    reader = PduReader()
    for chunk in chunks:
        for frame in reader.feed(chunk):
            if isinstance(frame, bytes):
                try:
                    decode_pdu(frame)
                except DecodeError:
                    pass


@given(st.binary(min_size=0, max_size=200), st.sampled_from([4, 5, 9, 0x80000004, 0x103]))
@settings(max_examples=300, deadline=None)
def test_decoder_never_crashes_on_garbage_bodies(body, command_id):
    import struct

    from sms.pdu import DecodeError

    frame = struct.pack(">LLLL", 16 + len(body), command_id, 0, 7) + body
    try:
        decode_pdu(frame)
    except DecodeError as exc:
        assert exc.sequence == 7


def test_decoder_tolerates_unknown_and_misplaced_tlvs():
    import struct

    good = encode_pdu("deliver_sm", 3, source_addr="1", destination_addr="2",
                      short_message=b"JF")
    extra = struct.pack(">HHH", 0x1403, 2, 0xBEEF) + struct.pack(">HHB", 0x0005, 1, 1)
    extra += struct.pack(">HHH", 0x0427, 2, 2)  # message_state with a 2-byte length
    frame = struct.pack(">L", len(good) + len(extra)) + good[4:] + extra
    pdu = decode_pdu(frame)
    assert pdu.get("short_message") == b"JF"
    assert pdu.unknown_tlvs[0x1403] == b"\xbe\xef" and 0x0005 in pdu.unknown_tlvs
    assert pdu.get("message_state") == 2


def test_receipt_text_and_ids():
    r = parse_receipt_text(
        "id:0001A2B sub:001 dlvrd:001 submit date:2501011200 done date:2501011201 "
        "stat:DELIVRD err:000 Text:hello"
    )
    assert (r.id, r.stat, r.err, r.submit_date, r.text) == (
        "0001A2B", "DELIVRD", "000", "2501011200", "hello")
    assert parse_receipt_text("no receipt here") is None
    assert ids_match("1A2B", "6699")  # hex in submit_sm_resp, decimal in the receipt
    assert ids_match("1a2b", "0001A2B")
    assert ids_match("000123", "123")
    assert not ids_match("1A2B", "1A2C")
    assert normalise_message_id("6699", hint="dec") == {"6699"}
    assert ids_match("AbC-9", "abc-9")


def test_fits_says_what_a_trial_split_says_around_the_part_limits():
    import random

    from sms.encoding import MessageTooLong as TooLong
    from sms.encoding import split_message as split
    from sms.render import fits

    rnd = random.Random(7)
    alphabets = ["abc ", "abc{}[]~", "积分查询", "积分😀a", "€^|ab"]  # escapes, surrogates
    for _ in range(3000):
        chars = rnd.choice(alphabets)
        max_parts = rnd.choice((1, 2, 3, 4))
        text = "".join(rnd.choice(chars) for _ in range(rnd.randint(1, 160 * max_parts)))
        try:
            split(text, max_parts, ref=0)
            expected = True
        except TooLong:
            expected = False
        assert fits(text, max_parts) == expected, (text, max_parts)


@given(st.text(alphabet=st.sampled_from("aZ0 @é\n€[中文😀\ud7ff\ue000"), max_size=500),
       st.integers(1, 10), st.integers(0, 300))
@settings(max_examples=400, deadline=None)
def test_the_slicing_fast_path_splits_as_the_unit_by_unit_path(text, max_parts, ref):
    # split_message slices texts whose characters are one unit each; the general path packs
    # (chars, bytes, units) tuples. Both must give the same parts, byte for byte.
    from sms import encoding

    coding = encoding.choose_coding(text)
    assert coding == ("gsm" if all(ch in encoding._GSM_ENC for ch in text) else "ucs2")
    dc = encoding.DC_GSM if coding == "gsm" else encoding.DC_UCS2
    sizes = ((encoding.GSM_SINGLE, encoding.GSM_PART) if coding == "gsm"
             else (encoding.UCS2_SINGLE, encoding.UCS2_PART))
    try:
        expected = encoding._split_units(text, coding, dc, *sizes, max_parts, ref)
    except MessageTooLong:
        with pytest.raises(MessageTooLong):
            split_message(text, max_parts, ref=ref)
        return
    assert split_message(text, max_parts, ref=ref) == expected


_GSM_ALPHABET = sorted(enc._GSM_ENC)


def _joined_gsm(text: str) -> bytes:
    """The septets by the plain table lookup ``encode_gsm`` used before it translated."""
    return b"".join(enc._GSM_ENC[ch] for ch in text)


@given(st.text(alphabet=st.sampled_from(_GSM_ALPHABET), max_size=400))
def test_gsm_encoding_by_translation_is_the_table_lookup(text):
    assert encode_gsm(text) == _joined_gsm(text)


@given(st.text(max_size=50))
def test_gsm_encoding_refuses_the_first_character_outside_gsm(text):
    bad = next((ch for ch in text if ch not in enc._GSM_ENC), None)
    if bad is None:
        assert encode_gsm(text) == _joined_gsm(text)
    else:
        with pytest.raises(ValueError, match=re.escape(f"character {bad!r} is not")):
            encode_gsm(text)
