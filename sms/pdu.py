"""SMPP 3.4 PDU framing and codec.

smpplib's command classes define the fields (order, types, sizes, TLV tags); this module
compiles them into tables and walks those (see "the codec" below), fixing smpplib's gaps on
input from a peer we do not control:

* ``make_pdu(..., sequence=n)`` silently ignores ``sequence``; we own sequence numbers.
* Its parser raises on an unknown TLV tag and on a known tag the command does not list, reads
  integer TLVs by the declared size instead of the TLV length, reads past the end of a
  truncated TLV, and silently restarts from offset 0 when a mandatory C-string lacks its NUL.
  Here unknown TLVs are kept raw, lengths are honoured and every read is bounds-checked.
* Anything malformed becomes ``DecodeError`` carrying the command_status to answer with.

Framing lives in :mod:`sms.pdu_framing`, the hand-written paths of the PDUs of every SMS round
trip in :mod:`sms.pdu_fast` (both re-exported or used here).

Receipt texts and message ids live in :mod:`sms.receipt_text` (re-exported here).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from smpplib import command as sm_command
from smpplib import command_codes, consts, smpp
from smpplib.ptypes import flag, ostr

from sms.pdu_fast import (
    SM_FIELDS,
    decode_message_id_body,
    decode_sm_mandatory,
    encode_sm_body,
)
from sms.pdu_framing import MAX_PDU_LEN, MIN_PDU_LEN, BadFrame, PduReader
from sms.receipt_text import Receipt, ids_match, normalise_message_id, parse_receipt_text

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
    "normalise_message_id",
    "parse_receipt_text",
]

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


@dataclass(slots=True)
class Pdu:
    """A decoded PDU; treat it as immutable. (Not ``frozen``: a frozen dataclass's __init__
    costs four times as much, and three are built per SMS round trip.)"""

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

# -- the codec, compiled from smpplib's command tables ---------------------------------------
#
# smpplib's command classes are the field definitions (order, types, sizes, TLV tags); walking
# them through its objects costs ~100 us a PDU (attribute juggling per field), which was a
# fifth of the server's CPU per SMS round trip. So each command's table is compiled once into
# tuples and walked here. The result is what smpplib produces (tests/sms/test_pdu_codec.py
# checks it byte for byte against smpplib), plus the bounds checks smpplib lacks. Commands
# whose smpplib class has its own ``prep`` beyond sm_length (query_sm) are encoded by smpplib.

_INT, _STR, _OSTR, _FLAG = "int", "str", "ostr", "flag"
_FORMATS = consts.INT_PACK_FORMATS


def _kind(param: Any) -> str:
    return {int: _INT, str: _STR, ostr: _OSTR, flag: _FLAG}[param.type]


@dataclass(frozen=True)
class _Spec:
    command_id: int
    mandatory: tuple[tuple[str, str, int, str], ...]  # name, kind, int size / str max, len field
    optional: tuple[tuple[str, str, int, int], ...]  # name, kind, int size / str max, TLV tag
    tlv_kind: Mapping[str, str]  # every param a TLV may set
    defaults: Mapping[str, Any]  # values smpplib's fresh object holds (sm_length=0 ...)
    fixed: Mapping[str, Any]  # values smpplib sets itself and ignores kwargs for
    sets_sm_length: bool
    encodable: bool


def _compile(name: str) -> _Spec:
    p = smpp.make_pdu(name, client=_STUB)
    mandatory, optional = [], []
    for fname in p.params_order:
        param = p.params[fname]
        kind = _kind(param)
        size = getattr(param, "size", getattr(param, "max", 0))
        if p.field_is_optional(fname):
            optional.append((fname, kind, size, consts.OPTIONAL_PARAMS[fname]))
        elif optional:
            raise AssertionError(f"{name}: mandatory {fname} after an optional field")
        else:
            if kind is _INT and size != 1:
                raise AssertionError(f"{name}: {fname} is a {size}-byte mandatory int")
            mandatory.append((fname, kind, size, getattr(param, "len_field", "")))
    defaults = {f: getattr(p, f) for f in p.params_order if getattr(p, f, None) is not None}
    prep = getattr(type(p), "prep", None)
    sets_sm_length = prep is sm_command.SubmitSM.prep
    fixed = {f: v for f, v in defaults.items() if not (sets_sm_length and f == "sm_length")}
    return _Spec(
        command_id=command_codes.get_command_code(name),
        mandatory=tuple(mandatory), optional=tuple(optional),
        tlv_kind={f: _kind(p.params[f]) for f in p.params_order}, defaults=defaults,
        fixed=fixed, sets_sm_length=sets_sm_length, encodable=prep is None or sets_sm_length)


_SPECS = {name: _compile(name) for name in _SUPPORTED}


def _str(value: Any) -> Any:
    return value.decode("latin-1") if isinstance(value, bytes | bytearray) else value


def _parse_body(spec: _Spec, body: bytes, values: dict[str, Any],
                unknown: dict[int, bytes]) -> None:
    """Mandatory fields in order (stopping where the body ends, as smpplib does), then TLVs.
    Raises ValueError on anything malformed."""
    pos, end = 0, len(body)
    for fname, kind, size, len_field in spec.mandatory:
        if pos == end:
            return
        if kind is _INT:
            if pos + size > end:
                raise ValueError(f"truncated {fname}")
            values[fname] = body[pos]
            pos += 1
        elif kind is _STR:
            nul = body.find(b"\0", pos)
            if nul < 0:
                raise ValueError(f"unterminated {fname}")
            values[fname] = body[pos:nul].decode("latin-1")
            pos = nul + 1
        else:
            length = values.get(len_field) or 0
            if pos + length > end:
                raise ValueError(f"truncated {fname}")
            values[fname] = body[pos : pos + length]
            pos += length
    _parse_tlvs(spec.tlv_kind, body, pos, values, unknown)


def _parse_tlvs(tlv_kind: Mapping[str, str], body: bytes, pos: int, values: dict[str, Any],
                unknown: dict[int, bytes]) -> None:
    end = len(body)
    while pos < end:
        if pos + 4 > end:
            raise ValueError("truncated TLV header")
        tag, length = _TLV_HEAD.unpack_from(body, pos)
        value = body[pos + 4 : pos + 4 + length]
        if len(value) < length:
            raise ValueError(f"truncated TLV 0x{tag:04x}")
        pos += 4 + length
        fname = _TLV_NAME.get(tag)
        kind = tlv_kind.get(fname) if fname else None
        if kind is None:
            unknown[tag] = value
        elif kind is _INT:
            values[fname] = int.from_bytes(value, "big") if value else None
        elif kind is _STR:
            values[fname] = value.split(b"\0", 1)[0].decode("latin-1")
        elif kind is _FLAG:
            values[fname] = True
        else:
            values[fname] = value


_HEADER = struct.Struct(">LLLL")
_TLV_HEAD = struct.Struct(">HH")


def decode_pdu(frame: bytes) -> Pdu:
    """Decode one framed PDU. Raises UnknownCommand or DecodeError, never anything else."""
    if len(frame) < MIN_PDU_LEN:
        raise DecodeError("short PDU", command_id=0, sequence=0, status=ESME_RINVCMDLEN)
    length, command_id, status, sequence = _HEADER.unpack_from(frame)
    if length != len(frame):
        raise DecodeError("length mismatch", command_id=command_id, sequence=sequence,
                          status=ESME_RINVCMDLEN)
    name = _NAME_BY_ID.get(command_id)
    spec = _SPECS.get(name) if name else None
    if spec is None:
        raise UnknownCommand(f"command_id 0x{command_id:08x}", command_id=command_id,
                             sequence=sequence, status=ESME_RINVCMDID)
    body = bytes(frame[16:])
    fast = _FAST_DECODE.get(command_id)
    if fast is not None:
        pdu = fast(name, command_id, status, sequence, body)
        if pdu is not None:
            return pdu
    values = dict(spec.defaults)
    unknown: dict[int, bytes] = {}
    try:
        _parse_body(spec, body, values, unknown)
    except ValueError as exc:
        bad_tlv = "TLV" in str(exc)
        raise DecodeError(f"{name}: {exc}", command_id=command_id, sequence=sequence,
                          status=ESME_RINVOPTPARSTREAM if bad_tlv else ESME_RINVMSGLEN) from exc
    params = {k: v for k, v in values.items() if v is not None}
    sm = params.get("short_message")
    if sm is not None and params.get("sm_length", len(sm)) != len(sm):
        raise DecodeError("sm_length mismatch", command_id=command_id, sequence=sequence,
                          status=ESME_RINVMSGLEN)
    return Pdu(name, command_id, status, sequence, params, unknown)


def encode_pdu(command: str, sequence: int, status: int = ESME_ROK, **params: Any) -> bytes:
    """Encode as smpplib would. String fields take str; octet strings (short_message,
    message_payload) take bytes. None values are left out."""
    if not params:
        body = _BARE_BODY.get(command)
        if body is not None:  # deliver_sm_resp, enquire_link_resp, generic_nack ...
            return _HEADER.pack(16 + len(body), _SPECS[command].command_id, status,
                                sequence) + body
    if command in _SM_LAYOUT:
        body = encode_sm_body(params)
        if body is not None:
            return _HEADER.pack(16 + len(body), _SM_LAYOUT[command], status, sequence) + body
    spec = _SPECS.get(command)
    if spec is None or not spec.encodable:
        return _encode_with_smpplib(command, sequence, status, params)
    if spec.fixed:
        params.update(spec.fixed)
    if spec.sets_sm_length:
        sm = params.get("short_message")
        if sm and params.get("message_payload"):
            raise ValueError("`message_payload` can not be used with `short_message`")
        params["sm_length"] = len(sm) if sm else 0
    out = []
    for fname, kind, size, _ in spec.mandatory:
        value = params.get(fname)
        if kind is _INT:
            out.append(bytes((value,)) if value else b"\0")
        elif kind is _STR:
            value = value or ""
            if len(value) >= size:  # smpplib keeps max - 1 characters and the NUL
                value = value[: size - 1]
            out.append(value.encode("latin-1") + b"\0")
        elif value:
            out.append(value)
    for fname, kind, size, tag in spec.optional:
        value = params.get(fname)
        if value is None:
            continue
        if kind is _INT:
            out.append(struct.pack(">HH" + _FORMATS[size], tag, size, value))
        elif kind is _STR and value:
            if len(value) > size:
                value = value[: size - 1]
            data = value.encode("latin-1") + b"\0"
            out.append(_TLV_HEAD.pack(tag, len(data)) + data)
        elif kind is _OSTR and value:
            out.append(_TLV_HEAD.pack(tag, len(value)) + value)
        # smpplib never encodes flag TLVs; neither do we
    body = b"".join(out)
    return _HEADER.pack(16 + len(body), spec.command_id, status, sequence) + body


# -- the hand-written paths (sms/pdu_fast.py) of the PDUs of every SMS round trip --------------


def _decode_sm(name: str, command_id: int, status: int, sequence: int, body: bytes
               ) -> Pdu | None:
    got = decode_sm_mandatory(body)
    if got is None:
        return None
    values, pos = got
    unknown: dict[int, bytes] = {}
    if pos < len(body):
        try:
            _parse_tlvs(_SPECS[name].tlv_kind, body, pos, values, unknown)
        except ValueError:
            return None  # the general path raises the DecodeError
        values = {k: v for k, v in values.items() if v is not None}
        sm = values.get("short_message")
        if sm is not None and values.get("sm_length", len(sm)) != len(sm):
            return None
    return Pdu(name, command_id, status, sequence, values, unknown)


def _decode_message_id(name: str, command_id: int, status: int, sequence: int, body: bytes
                       ) -> Pdu | None:
    values = decode_message_id_body(body)
    return None if values is None else Pdu(name, command_id, status, sequence, values, {})


_SM_LAYOUT = {name: _SPECS[name].command_id for name in ("submit_sm", "deliver_sm")}
_FAST_DECODE = {_SPECS[name].command_id: fn for name, fn in (
    ("deliver_sm", _decode_sm), ("submit_sm", _decode_sm),
    ("submit_sm_resp", _decode_message_id), ("deliver_sm_resp", _decode_message_id))}
if not all(tuple(f for f, *_ in _SPECS[name].mandatory) == SM_FIELDS
           and _SPECS[name].defaults == {"sm_length": 0} and not _SPECS[name].fixed
           for name in _SM_LAYOUT):  # the hand-written layout is smpplib's, or stop here
    raise AssertionError("smpplib's short message layout differs from sms/pdu_fast.py")


# The body of each command sent without parameters (every answer the session sends is one):
# it depends on the command alone, so it is encoded once.
_BARE_BODY: dict[str, bytes] = {}
_BARE_BODY.update((name, encode_pdu(name, 0)[16:]) for name, spec in _SPECS.items()
                  if spec.encodable and not spec.sets_sm_length)


def _encode_with_smpplib(command: str, sequence: int, status: int,
                         params: dict[str, Any]) -> bytes:
    params = {k: v for k, v in params.items() if v is not None}
    p = smpp.make_pdu(command, client=_STUB, **params)
    p.sequence = sequence  # make_pdu ignores the sequence kwarg
    p.status = status
    return p.generate()


def generic_nack(sequence: int, status: int) -> bytes:
    return encode_pdu("generic_nack", sequence, status)
