"""SMS text coding, splitting into concatenated parts, MO decoding and reassembly.

Pure functions and classes: no Twisted, no clock (callers pass ``now``).

Conventions
-----------
* GSM 03.38 text is sent with ``data_coding`` 0 as **unpacked septets**: one septet per
  octet, values 0x00-0x7F, extension-table characters as the two octets ``1B xx``. This is
  the usual SMPP convention for the SMSC default alphabet (the SMSC packs to 7 bits on the
  air interface). The UDH, when present, precedes the septets as plain octets.
* Everything that does not fit the GSM default alphabet (+ extension table) is sent as
  UCS-2 / UTF-16BE (``data_coding`` 8). Characters outside the BMP (emoji) take two UTF-16
  code units, exactly what handsets do.
* Limits: GSM 160 septets in one message, 153 per part of a concatenated message; UCS-2 70
  code units single, 67 per part. An escape sequence (2 septets) and a surrogate pair
  (2 code units) are never split between parts. Grapheme clusters (ZWJ emoji sequences,
  combining marks) may be split between parts; handsets join the parts before display.
* Concatenation uses the 8-bit reference UDH ``05 00 03 ref total seq`` and sets
  ``esm_class`` bit 0x40 (UDHI).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "DC_GSM",
    "DC_LATIN1",
    "DC_UCS2",
    "ESM_UDHI",
    "Concat",
    "DecodedMO",
    "MessageTooLong",
    "Part",
    "Reassembler",
    "choose_coding",
    "decode_payload",
    "decode_short_message",
    "encode_gsm",
    "split_message",
]

DC_GSM = 0x00
DC_IA5 = 0x01
DC_LATIN1 = 0x03
DC_UCS2 = 0x08
ESM_UDHI = 0x40

GSM_SINGLE, GSM_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67

# GSM 03.38 default alphabet, index = septet value. 0x1B is the escape to the extension table.
_GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
assert len(_GSM_BASIC) == 128
_GSM_EXT = {
    0x0A: "\x0c", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\",
    0x3C: "[", 0x3D: "~", 0x3E: "]", 0x40: "|", 0x65: "€",
}
_ESC = 0x1B
_GSM_ENC: dict[str, bytes] = {ch: bytes([i]) for i, ch in enumerate(_GSM_BASIC) if i != _ESC}
_GSM_ENC.update({ch: bytes([_ESC, code]) for code, ch in _GSM_EXT.items()})


class MessageTooLong(ValueError):
    """The text needs more parts than allowed (``max_parts``)."""


class Concat(NamedTuple):
    ref: int
    total: int
    seq: int


@dataclass(frozen=True)
class Part:
    """One submit_sm worth of message: put these three fields straight into the PDU."""

    data_coding: int
    esm_class: int
    short_message: bytes
    text: str  # the slice of the original text carried by this part (for logs and tests)


@dataclass(frozen=True)
class DecodedMO:
    """A decoded deliver_sm body. ``concat`` is None for an unsegmented message."""

    text: str
    concat: Concat | None
    data_coding: int = DC_GSM
    payload: bytes = b""  # user data without UDH, as received (used by the Reassembler)


# -- MT: coding choice and splitting ---------------------------------------------------------


_GSM_CHARS = frozenset(_GSM_ENC)
_GSM_ONE_SEPTET = frozenset(ch for ch, septets in _GSM_ENC.items() if len(septets) == 1)


def choose_coding(text: str) -> str:
    """``"gsm"`` when every character is in the GSM default alphabet or its extension
    table, else ``"ucs2"``."""
    return "gsm" if _GSM_CHARS.issuperset(text) else "ucs2"


# Every GSM character -> its septets as Latin-1 characters: ``str.translate`` then
# ``encode("latin-1")`` encode in C (a join over a generator cost ~2 us per 100 characters,
# on every reply that is sent or fitted).
_GSM_TRANSLATE = {ord(ch): septets.decode("latin-1") for ch, septets in _GSM_ENC.items()}


def encode_gsm(text: str) -> bytes:
    """Unpacked GSM septets (one per octet). Raises ValueError on a character outside GSM."""
    if not _GSM_CHARS.issuperset(text):
        bad = next(ch for ch in text if ch not in _GSM_CHARS)
        raise ValueError(f"character {bad!r} is not in the GSM alphabet")
    return text.translate(_GSM_TRANSLATE).encode("latin-1")


def _units(text: str, coding: str) -> list[tuple[str, bytes, int]]:
    """Indivisible units: (chars, encoded bytes, size in septets / UTF-16 code units)."""
    if coding == "gsm":
        return [(ch, _GSM_ENC[ch], len(_GSM_ENC[ch])) for ch in text]
    out = []
    for ch in text:
        enc = ch.encode("utf-16-be")
        out.append((ch, enc, len(enc) // 2))  # astral char = surrogate pair = 2 units
    return out


def _pack(units: list[tuple[str, bytes, int]], capacity: int) -> list[list[tuple]]:
    chunks: list[list[tuple]] = [[]]
    used = 0
    for unit in units:
        if used + unit[2] > capacity and chunks[-1]:
            chunks.append([])
            used = 0
        chunks[-1].append(unit)
        used += unit[2]
    return chunks


def split_message(text: str, max_parts: int = 3, ref: int | None = None) -> list[Part]:
    """Code ``text`` (GSM when possible, else UCS-2) and split it into submit_sm parts.

    ``ref`` is the 8-bit concatenation reference (random when None); use a different one
    for each message to the same destination. Raises MessageTooLong beyond ``max_parts``.
    """
    coding = choose_coding(text)
    dc = DC_GSM if coding == "gsm" else DC_UCS2
    single, per_part = (GSM_SINGLE, GSM_PART) if coding == "gsm" else (UCS2_SINGLE, UCS2_PART)
    if _one_unit_each(text, coding):
        # The common case (no GSM escape, no surrogate pair): parts are plain slices, as
        # _pack would cut them, without a tuple per character (this ran on the reactor for
        # every reply; tests/sms/test_encoding.py checks it against the general path).
        return _split_slices(text, coding, dc, single, per_part, max_parts, ref)
    return _split_units(text, coding, dc, single, per_part, max_parts, ref)


def _split_units(text: str, coding: str, dc: int, single: int, per_part: int,
                 max_parts: int, ref: int | None) -> list[Part]:
    units = _units(text, coding)
    if sum(u[2] for u in units) <= single:
        return [Part(dc, 0, b"".join(u[1] for u in units), text)]
    pieces = [(b"".join(u[1] for u in chunk), "".join(u[0] for u in chunk))
              for chunk in _pack(units, per_part)]
    return _concatenated(pieces, coding, dc, len(text), max_parts, ref)


def _concatenated(pieces: list[tuple[bytes, str]], coding: str, dc: int, chars: int,
                  max_parts: int, ref: int | None) -> list[Part]:
    """The parts of a concatenated message, each ``(payload, text)`` behind its UDH."""
    if len(pieces) > max_parts:
        raise MessageTooLong(
            f"{len(pieces)} parts needed ({coding}, {chars} chars), max {max_parts}"
        )
    if len(pieces) > 255:
        raise MessageTooLong("more than 255 parts")
    ref = random.randrange(256) if ref is None else ref & 0xFF
    total = len(pieces)
    return [Part(dc, ESM_UDHI, bytes([5, 0, 3, ref, total, seq]) + payload, chunk)
            for seq, (payload, chunk) in enumerate(pieces, start=1)]


def _one_unit_each(text: str, coding: str) -> bool:
    if coding == "gsm":
        return _GSM_ONE_SEPTET.issuperset(text)
    return not text or max(text) <= "\uffff"


def _split_slices(text: str, coding: str, dc: int, single: int, per_part: int,
                  max_parts: int, ref: int | None) -> list[Part]:
    encode = encode_gsm if coding == "gsm" else (lambda t: t.encode("utf-16-be"))
    if len(text) <= single:
        return [Part(dc, 0, encode(text), text)]
    chunks = [text[i : i + per_part] for i in range(0, len(text), per_part)]
    return _concatenated([(encode(c), c) for c in chunks], coding, dc, len(text), max_parts,
                         ref)


# -- MO: decoding ----------------------------------------------------------------------------


def _decode_gsm(data: bytes) -> str:
    if any(b > 0x7F for b in data):
        # Not unpacked septets: some SMSCs put Latin-1 in data_coding 0. Best effort.
        return data.decode("latin-1")
    out = []
    i = 0
    while i < len(data):
        b = data[i]
        if b == _ESC:
            if i + 1 < len(data):
                nxt = data[i + 1]
                # 03.38: an unknown extension code shows the default-table character.
                out.append(_GSM_EXT.get(nxt, _GSM_BASIC[nxt] if nxt != _ESC else " "))
                i += 2
                continue
            i += 1  # a dangling escape at the end carries nothing
            continue
        out.append(_GSM_BASIC[b])
        i += 1
    return "".join(out)


def _alphabet(data_coding: int) -> str:
    if data_coding in (DC_GSM,):
        return "gsm"
    if data_coding == DC_IA5:
        return "ascii"
    if data_coding == DC_UCS2:
        return "ucs2"
    if data_coding & 0xF0 == 0xF0:  # GSM 03.38 data coding/message class group
        return "latin1" if data_coding & 0x04 else "gsm"
    if 0x10 <= data_coding <= 0x3F or 0x40 <= data_coding <= 0x7F:  # general data coding
        return {0: "gsm", 1: "latin1", 2: "ucs2", 3: "latin1"}[(data_coding >> 2) & 3]
    return "latin1"  # 3 Latin-1, and binary/unknown codings as a best effort


def decode_payload(data_coding: int, payload: bytes) -> str:
    """Decode user data (no UDH) according to ``data_coding``; never raises."""
    alpha = _alphabet(data_coding)
    if alpha == "gsm":
        return _decode_gsm(payload)
    if alpha == "ucs2":
        return payload[: len(payload) & ~1].decode("utf-16-be", errors="replace")
    if alpha == "ascii":
        return payload.decode("ascii", errors="replace")
    return payload.decode("latin-1")


def _parse_udh(udh: bytes) -> Concat | None:
    i = 0
    found = None
    while i + 2 <= len(udh):
        iei, iel = udh[i], udh[i + 1]
        data = udh[i + 2 : i + 2 + iel]
        if len(data) < iel:
            break
        if iei == 0x00 and iel == 3:
            found = Concat(data[0], data[1], data[2])
        elif iei == 0x08 and iel == 4:
            found = Concat(int.from_bytes(data[0:2], "big"), data[2], data[3])
        i += 2 + iel
    return found


def _valid(c: Concat | None) -> Concat | None:
    if c is None or c.total < 1 or not 1 <= c.seq <= c.total:
        return None
    return c


def decode_short_message(
    data_coding: int,
    esm_class: int,
    short_message: bytes | None,
    *,
    message_payload: bytes | None = None,
    sar_msg_ref_num: int | None = None,
    sar_total_segments: int | None = None,
    sar_segment_seqnum: int | None = None,
) -> DecodedMO:
    """Decode a deliver_sm/data_sm body.

    The user data is ``short_message``, or the ``message_payload`` TLV when short_message is
    empty. With UDHI (esm_class & 0x40) the UDH is stripped and a concatenation IE (8-bit
    ref IEI 0x00 or 16-bit ref IEI 0x08) becomes ``concat``; otherwise the SAR TLVs, when
    all three are present, give ``concat``. Never raises on malformed input.
    """
    data = bytes(short_message or b"")
    if not data and message_payload:
        data = bytes(message_payload)
    concat = None
    if esm_class & ESM_UDHI and data:
        udhl = data[0]
        concat = _parse_udh(data[1 : 1 + udhl])
        data = data[1 + udhl :]
    if concat is None and None not in (sar_msg_ref_num, sar_total_segments, sar_segment_seqnum):
        concat = Concat(sar_msg_ref_num, sar_total_segments, sar_segment_seqnum)
    concat = _valid(concat)
    if concat is not None and concat.total == 1:
        concat = None
    return DecodedMO(decode_payload(data_coding, data), concat, data_coding, data)


# -- MO: reassembly --------------------------------------------------------------------------


@dataclass
class _Pending:
    first_seen: float
    total: int
    parts: dict[int, DecodedMO]


class Reassembler:
    """Joins concatenated MO parts keyed by (source_addr, ref, total).

    Parts may arrive out of order or twice (the first copy wins). An incomplete set is
    dropped ``timeout_s`` after its first part arrived. The payloads are joined before
    decoding when all parts share a data_coding, so a character split across parts by the
    sender (a surrogate pair, an escape sequence) still comes out whole.
    """

    def __init__(self, timeout_s: float = 300.0, max_pending: int = 10_000):
        self.timeout_s = timeout_s
        self.max_pending = max_pending
        self._sets: dict[tuple[str, int, int], _Pending] = {}

    def __len__(self) -> int:
        return len(self._sets)

    def add(self, source_addr: str, mo: DecodedMO, now: float) -> str | None:
        """Add one part; return the whole text when complete, else None. An unsegmented
        message is returned at once."""
        self.expire(now)
        if mo.concat is None:
            return mo.text
        key = (source_addr, mo.concat.ref, mo.concat.total)
        pending = self._sets.get(key)
        if pending is None:
            if len(self._sets) >= self.max_pending:  # shed the oldest set
                oldest = min(self._sets, key=lambda k: self._sets[k].first_seen)
                del self._sets[oldest]
            pending = self._sets[key] = _Pending(now, mo.concat.total, {})
        pending.parts.setdefault(mo.concat.seq, mo)
        if len(pending.parts) < pending.total:
            return None
        del self._sets[key]
        parts = [pending.parts[i] for i in range(1, pending.total + 1)]
        codings = {p.data_coding for p in parts}
        if len(codings) == 1:
            return decode_payload(codings.pop(), b"".join(p.payload for p in parts))
        return "".join(p.text for p in parts)

    def expire(self, now: float) -> int:
        """Drop incomplete sets older than the timeout; return how many were dropped."""
        stale = [k for k, p in self._sets.items() if now - p.first_seen > self.timeout_s]
        for k in stale:
            del self._sets[k]
        return len(stale)
