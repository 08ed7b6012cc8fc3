"""SMPP 3.4 delivery receipt texts (Appendix B) and SMSC message ids compared across bases."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Receipt", "ids_match", "normalise_message_id", "parse_receipt_text"]


def _str(value: str | bytes | bytearray | None) -> str | None:
    return value.decode("latin-1") if isinstance(value, bytes | bytearray) else value


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


# The Appendix B layout exactly, as nearly every SMSC sends it: one match instead of a scan.
_CANONICAL_RECEIPT = re.compile(
    r"id:([^\s:]*) sub:([^\s:]*) dlvrd:([^\s:]*) submit date:([^\s:]*) "
    r"done date:([^\s:]*) stat:([^\s:]*) err:([^\s:]*)(?: text:(.*))?", re.I | re.S)


def parse_receipt_text(text: str | bytes) -> Receipt | None:
    """Parse ``id:... sub:... dlvrd:... submit date:... done date:... stat:... err:...
    text:...``. Keys are case-insensitive and may come in any order; ``text`` takes the rest.
    Returns None when there is no ``id:``."""
    s = _str(text) if isinstance(text, bytes | bytearray) else text
    m = _CANONICAL_RECEIPT.fullmatch(s)
    if m is not None and m.group(1):
        rid, sub, dlvrd, submitted, done, stat, err, rest = m.groups()
        return Receipt(id=rid, stat=stat, err=err, sub=sub, dlvrd=dlvrd, submit_date=submitted,
                       done_date=done, text=rest.strip() if rest is not None else None)
    return _scan_receipt_text(s)


def _scan_receipt_text(s: str) -> Receipt | None:
    """The general reading: keys in any order, values up to the next key."""
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


_HEX_DIGITS = "0123456789abcdef"


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
    # str methods, not regexes (cheaper; every receipt comes here): for ASCII, isdigit() is
    # [0-9]+ and an empty strip() of the hex digits is [0-9a-f]+ (tests/sms/test_pdu_fast.py).
    if s and s.isascii():
        if s.isdigit():
            if hint == "dec":
                return frozenset({str(int(s, 10))})
            if hint == "hex":
                return frozenset({str(int(s, 16))})
            return frozenset({str(int(s, 10)), str(int(s, 16))})
        if not s.strip(_HEX_DIGITS):
            return frozenset({str(int(s, 16))})
    return frozenset({"s:" + s})


def ids_match(a: str, b: str) -> bool:
    return bool(normalise_message_id(a) & normalise_message_id(b))
