"""SMPP 3.4 framing: a TCP byte stream split into PDUs by their command_length."""

from __future__ import annotations

import struct
from dataclasses import dataclass

MIN_PDU_LEN = 16
MAX_PDU_LEN = 65536

_LENGTH = struct.Struct(">L")


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
        self._rest = b""  # the start of a frame not yet whole
        self.poisoned = False

    def feed(self, data: bytes) -> list[bytes | BadFrame]:
        if self.poisoned:
            return []
        # Frames are sliced out of one bytes object by offset: under load a read holds many
        # PDUs, and cutting each off the front of a bytearray copied it twice.
        buf = self._rest + data if self._rest else bytes(data)
        pos, end = 0, len(buf)
        out: list[bytes | BadFrame] = []
        unpack = _LENGTH.unpack_from
        while end - pos >= 4:
            (length,) = unpack(buf, pos)
            if not MIN_PDU_LEN <= length <= self.max_len:
                self.poisoned = True
                out.append(BadFrame(length, buf[pos : pos + 16]))
                self._rest = b""
                return out
            if end - pos < length:
                break
            out.append(buf[pos : pos + length])
            pos += length
        self._rest = buf[pos:] if pos else buf
        return out
