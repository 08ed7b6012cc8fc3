"""SMPP 3.4 PDU framing and a defensive wrapper around smpplib's codec.

smpplib (``smpplib.smpp.make_pdu`` / ``parse_pdu`` and its command classes) does the field
work. This module works around its gaps:

* ``make_pdu(..., sequence=n)`` silently ignores ``sequence`` (its ``_set_vars`` sees the dummy
  client's sequence 0 as "already set"); we assign ``pdu.sequence`` after construction.
* ``parse_pdu`` of a *request* PDU with ``client=None`` raises AttributeError (the dummy client
  has no ``next_sequence``); we pass a stub client.
* Its TLV parser raises on an unknown tag (unless ``allow_unknown_opt_params``), raises
  KeyError on a known tag that the command does not list, reads integer TLVs by the declared
  size instead of the TLV length, and reads past the end on a truncated TLV. We replace it per
  instance with a bounds-checked walker that keeps unknown TLVs raw.
* A mandatory C-string without its NUL makes smpplib silently restart parsing from offset 0;
  we validate the mandatory part first.
* Anything else it raises on garbage (struct.error, IndexError...) becomes ``DecodeError``.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from smpplib import command as sm_command
from smpplib import command_codes, consts, smpp
from smpplib.ptypes import flag, ostr

__all__ = [
    "MAX_PDU_LEN",
    "MIN_PDU_LEN",
    "BadFrame",
    "DecodeError",
    "Pdu",
    "PduReader",
    "Receipt",
    "UnknownCommand",
    "decode_pdu",
    "encode_pdu",
    "ids_match",
    "mask_msisdn",
    "normalise_message_id",
    "parse_receipt_text",
]

MIN_PDU_LEN = 16
MAX_PDU_LEN = 65536

# Command status values used by the session and simulator.
ESME_ROK = consts.SMPP_ESME_ROK
ESME_RINVMSGLEN = consts.SMPP_ESME_RINVMSGLEN
ESME_RINVCMDLEN = consts.SMPP_ESME_RINVCMDLEN
ESME_RINVCMDID = consts.SMPP_ESME_RINVCMDID
ESME_RINVBNDSTS = consts.SMPP_ESME_RINVBNDSTS
ESME_RALYBND = consts.SMPP_ESME_RALYBND
ESME_RSYSERR = consts.SMPP_ESME_RSYSERR
ESME_RBINDFAIL = consts.SMPP_ESME_RBINDFAIL
ESME_RMSGQFUL = consts.SMPP_ESME_RMSGQFUL
ESME_RTHROTTLED = consts.SMPP_ESME_RTHROTTLED
ESME_RX_T_APPN = consts.SMPP_ESME_RX_T_APPN
ESME_RINVOPTPARSTREAM = consts.SMPP_ESME_RINVOPTPARSTREAM

_SUPPORTED = {  # command names smpplib's factory can build
    "bind_transmitter", "bind_transmitter_resp", "bind_receiver", "bind_receiver_resp",
    "bind_transceiver", "bind_transceiver_resp", "data_sm", "data_sm_resp", "generic_nack",
    "submit_sm", "submit_sm_resp", "deliver_sm", "deliver_sm_resp", "query_sm",
    "query_sm_resp", "unbind", "unbind_resp", "enquire_link", "enquire_link_resp",
    "alert_notification",
}
_NAME_BY_ID = {v: k for k, v in command_codes.commands.items()}
_TLV_NAME = {v: k for k, v in consts.OPTIONAL_PARAMS.items()}


def mask_msisdn(number: str | bytes | None) -> str:
    """Mask the middle of a phone number for logs: 13812345678 -> 138****5678."""
    if number is None:
        return "-"
    s = number.decode("latin-1") if isinstance(number, bytes) else str(number)
    if len(s) >= 8:
        return s[:3] + "*" * (len(s) - 7) + s[-4:]
    if len(s) > 4:  # short codes and short numbers: keep the last 2
        return "*" * (len(s) - 2) + s[-2:]
    return s


# -- framing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadFrame:
    """The stream carried an impossible command_length; no resync is possible after it."""

    length: int
    header: bytes  # up to 16 bytes seen at the bad frame (sequence may be recoverable)

    @property
    def sequence(self) -> int:
        return struct.unpack(">L", self.header[12:16])[0] if len(self.header) >= 16 else 0


class PduReader:
    """Split a TCP byte stream into PDUs. ``feed`` returns complete frames (bytes) and, at
    most once, a BadFrame after which the reader is poisoned and ignores further input."""

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


# -- codec -----------------------------------------------------------------------------------


class DecodeError(Exception):
    """A framed PDU whose body cannot be decoded. ``status`` is what to answer with."""

    def __init__(self, msg: str, *, command_id: int, sequence: int, status: int = ESME_RSYSERR):
        super().__init__(msg)
        self.command_id = command_id
        self.sequence = sequence
        self.status = status

    @property
    def is_request(self) -> bool:
        return not self.command_id & 0x80000000


class UnknownCommand(DecodeError):
    """A command id we do not know or do not handle (answer generic_nack ESME_RINVCMDID)."""


@dataclass(frozen=True)
class Pdu:
    command: str
    command_id: int
    status: int
    sequence: int
    params: Mapping[str, Any] = field(default_factory=dict)  # mandatory fields + known TLVs
    unknown_tlvs: Mapping[int, bytes] = field(default_factory=dict)

    @property
    def is_response(self) -> bool:
        return bool(self.command_id & 0x80000000)

    def get(self, name: str, default: Any = None) -> Any:
        value = self.params.get(name)
        return default if value is None else value


class _SeqStub:
    """What smpplib wants from a 'client': a sequence and next_sequence(). We own sequences."""

    sequence = 0

    def next_sequence(self) -> int:
        return 0


_STUB = _SeqStub()


def _str(value: Any) -> Any:
    return value.decode("latin-1") if isinstance(value, bytes | bytearray) else value


def _check_mandatory(p: sm_command.Command, body: bytes) -> None:
    """Walk the mandatory fields as smpplib will, but with bounds checks."""
    pos = 0
    ints: dict[str, int] = {}
    for name in p.params_order:
        if pos == len(body) or p.field_is_optional(name):
            return
        param = p.params[name]
        if param.type is int:
            size = param.size
            if pos + size > len(body):
                raise ValueError(f"truncated {name}")
            ints[name] = int.from_bytes(body[pos : pos + size], "big")
            pos += size
        elif param.type is str:
            end = body.find(b"\0", pos)
            if end < 0:
                raise ValueError(f"unterminated {name}")
            pos = end + 1
        elif param.type is ostr:
            pos += ints.get(param.len_field, 0)
            if pos > len(body):
                raise ValueError(f"truncated {name}")


def _tlv_walker(p: sm_command.Command, unknown: dict[int, bytes], known: dict[str, Any]):
    def parse_optional_params(data: bytes) -> None:
        pos = 0
        while pos < len(data):
            if pos + 4 > len(data):
                raise ValueError("truncated TLV header")
            tag, length = struct.unpack(">HH", data[pos : pos + 4])
            value = bytes(data[pos + 4 : pos + 4 + length])
            if len(value) < length:
                raise ValueError(f"truncated TLV 0x{tag:04x}")
            pos += 4 + length
            name = _TLV_NAME.get(tag)
            param = p.params.get(name) if name else None
            if param is None:
                unknown[tag] = value
                continue
            if param.type is int:
                v: Any = int.from_bytes(value, "big") if value else None
            elif param.type is str:
                v = value.split(b"\0", 1)[0].decode("latin-1")
            elif param.type is flag:
                v = True
            else:
                v = value
            known[name] = v
            setattr(p, name, v)

    return parse_optional_params


def decode_pdu(frame: bytes) -> Pdu:
    """Decode one framed PDU. Raises UnknownCommand or DecodeError, never anything else."""
    if len(frame) < MIN_PDU_LEN:
        raise DecodeError("short PDU", command_id=0, sequence=0, status=ESME_RINVCMDLEN)
    length, command_id, status, sequence = struct.unpack(">LLLL", frame[:16])
    if length != len(frame):
        raise DecodeError("length mismatch", command_id=command_id, sequence=sequence,
                          status=ESME_RINVCMDLEN)
    name = _NAME_BY_ID.get(command_id)
    if name not in _SUPPORTED:
        raise UnknownCommand(f"command_id 0x{command_id:08x}", command_id=command_id,
                             sequence=sequence, status=ESME_RINVCMDID)
    known: dict[str, Any] = {}
    unknown: dict[int, bytes] = {}
    try:
        p = smpp.make_pdu(name, client=_STUB, allow_unknown_opt_params=True)
        p.parse_optional_params = _tlv_walker(p, unknown, known)
        _check_mandatory(p, frame[16:])
        p.parse(frame)
    except Exception as exc:  # smpplib raises assorted errors on garbage
        bad_tlv = "TLV" in str(exc)
        raise DecodeError(f"{name}: {exc}", command_id=command_id, sequence=sequence,
                          status=ESME_RINVOPTPARSTREAM if bad_tlv else ESME_RINVMSGLEN) from exc
    params: dict[str, Any] = {}
    for fname in p.params_order:
        value = known[fname] if fname in known else getattr(p, fname, None)
        if value is None:
            continue
        ptype = p.params[fname].type
        params[fname] = _str(value) if ptype is str else value
    sm = params.get("short_message")
    if sm is not None and params.get("sm_length", len(sm)) != len(sm):
        raise DecodeError("sm_length mismatch", command_id=command_id, sequence=sequence,
                          status=ESME_RINVMSGLEN)
    return Pdu(name, command_id, status, sequence, params, unknown)


def encode_pdu(command: str, sequence: int, status: int = ESME_ROK, **params: Any) -> bytes:
    """Encode with smpplib. String fields take str; octet strings (short_message,
    message_payload) take bytes. None values are left out."""
    params = {k: v for k, v in params.items() if v is not None}
    p = smpp.make_pdu(command, client=_STUB, **params)
    p.sequence = sequence  # make_pdu ignores the sequence kwarg
    p.status = status
    return p.generate()


def generic_nack(sequence: int, status: int) -> bytes:
    return encode_pdu("generic_nack", sequence, status)


# -- delivery receipts and message ids -------------------------------------------------------

_RECEIPT_KEYS = ("id", "sub", "dlvrd", "submit date", "done date", "stat", "err", "text")
_RECEIPT_RE = re.compile(r"(?i)\b(id|sub|dlvrd|submit date|done date|stat|err|text):")


@dataclass(frozen=True)
class Receipt:
    """The fields of an SMPP 3.4 Appendix B receipt text (all as received, stripped)."""

    id: str
    stat: str | None = None
    err: str | None = None
    sub: str | None = None
    dlvrd: str | None = None
    submit_date: str | None = None
    done_date: str | None = None
    text: str | None = None


def parse_receipt_text(text: str | bytes) -> Receipt | None:
    """Parse ``id:... sub:... dlvrd:... submit date:... done date:... stat:... err:...
    text:...``. Keys are case-insensitive and may come in any order; ``text`` takes the rest.
    Returns None when there is no ``id:``."""
    s = _str(text) if isinstance(text, bytes | bytearray) else text
    matches = list(_RECEIPT_RE.finditer(s))
    fields: dict[str, str] = {}
    for i, m in enumerate(matches):
        key = m.group(1).lower()
        if key == "text":
            fields.setdefault(key, s[m.end():].strip())
            break
        end = matches[i + 1].start() if i + 1 < len(matches) else len(s)
        fields.setdefault(key, s[m.end():end].strip())
    if not fields.get("id"):
        return None
    return Receipt(
        id=fields["id"], stat=fields.get("stat"), err=fields.get("err"), sub=fields.get("sub"),
        dlvrd=fields.get("dlvrd"), submit_date=fields.get("submit date"),
        done_date=fields.get("done date"), text=fields.get("text"),
    )


_DEC = re.compile(r"[0-9]+")
_HEX = re.compile(r"[0-9a-f]+")


def normalise_message_id(message_id: str | bytes, hint: str = "auto") -> frozenset[str]:
    """Comparable keys for an SMSC message id; two ids refer to the same message when their
    key sets intersect (see ``ids_match``).

    Heuristic: case, surrounding blanks/NULs and leading zeros never matter. Many SMSCs give
    the id in hex in submit_sm_resp but in decimal in the receipt text (Kannel's
    ``msg-id-type``), so a numeric id is reduced to integers: a hex-only id (has a-f) to
    ``int(x, 16)``; an all-digit id is ambiguous and yields both ``int(x, 10)`` and
    ``int(x, 16)``. ``hint="hex"`` or ``"dec"`` pins the base when the SMSC's style is known.
    Any other id (UUIDs, alphanumerics) is compared as lowercase text.
    """
    s = (_str(message_id) or "").strip().strip("\0").strip().lower()
    if hint == "dec" and _DEC.fullmatch(s):
        return frozenset({str(int(s, 10))})
    if hint == "hex" and _HEX.fullmatch(s):
        return frozenset({str(int(s, 16))})
    if _DEC.fullmatch(s):
        return frozenset({str(int(s, 10)), str(int(s, 16))})
    if _HEX.fullmatch(s):
        return frozenset({str(int(s, 16))})
    return frozenset({"s:" + s})


def ids_match(a: str, b: str) -> bool:
    return bool(normalise_message_id(a) & normalise_message_id(b))
