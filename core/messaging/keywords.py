"""SMS keyword parsing. Pure: text in, Command out.

Tolerant of case, full-width and half-width forms (NFKC), extra spaces and Chinese or Latin
punctuation around the keyword. A Latin keyword must end at a non-letter (``JF``, ``jf?``,
``ＪＦ``, ``DH A01``, ``dh，a01``); a Chinese keyword may run straight into its argument
(``兑换A01``, ``补登上月积分未到账``). A message of six digits alone is a confirmation code.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

BALANCE = "balance"
TIER = "tier"
HISTORY = "history"
CATALOGUE = "catalogue"
REDEEM = "redeem"
CONFIRM = "confirm"
DELIVERY = "delivery"
MAKEUP = "makeup"
COMPLAINT = "complaint"
TICKET_STATUS = "ticket_status"
STOP = "stop"
RESUME = "resume"  # expiry warnings back on
AUTO_REDEEM = "auto_redeem"  # monthly automatic redemption sign-up: a reward code
AUTO_CANCEL = "auto_cancel"
HELP = "help"
UNKNOWN = "unknown"  # anything else: answered with the help text

KINDS = (BALANCE, TIER, HISTORY, CATALOGUE, REDEEM, CONFIRM, DELIVERY, MAKEUP, COMPLAINT, STOP,
         HELP, UNKNOWN, TICKET_STATUS, RESUME, AUTO_REDEEM, AUTO_CANCEL)

# keyword -> command. The two-letter forms and Chinese words are the product interface;
# the English words are aliases for English-speaking members.
KEYWORDS: dict[str, str] = {
    "JF": BALANCE, "积分": BALANCE, "BALANCE": BALANCE, "POINTS": BALANCE,
    "DJ": TIER, "等级": TIER, "TIER": TIER,
    "MX": HISTORY, "明细": HISTORY, "HISTORY": HISTORY,
    "LB": CATALOGUE, "礼品": CATALOGUE, "GIFTS": CATALOGUE, "REWARDS": CATALOGUE,
    "DH": REDEEM, "兑换": REDEEM, "REDEEM": REDEEM,
    "QR": CONFIRM, "确认": CONFIRM, "CONFIRM": CONFIRM,
    "WL": DELIVERY, "物流": DELIVERY, "DELIVERY": DELIVERY,
    "BD": MAKEUP, "补登": MAKEUP, "CLAIM": MAKEUP,
    "TS": COMPLAINT, "投诉": COMPLAINT, "COMPLAINT": COMPLAINT,
    "CX": TICKET_STATUS, "查询": TICKET_STATUS,
    "TD": STOP, "退订": STOP, "STOP": STOP,
    "KT": RESUME, "开通": RESUME, "START": RESUME,
    "ZD": AUTO_REDEEM, "自动兑换": AUTO_REDEEM, "AUTO": AUTO_REDEEM,
    "QXZD": AUTO_CANCEL, "取消自动兑换": AUTO_CANCEL, "NOAUTO": AUTO_CANCEL,
    "BZ": HELP, "帮助": HELP, "HELP": HELP,
}
_BY_LENGTH = sorted(KEYWORDS, key=len, reverse=True)

# Punctuation (after NFKC, so full-width forms are already ASCII) and symbols that only
# separate words. Replaced one-for-one by spaces, so positions in the text stay aligned.
_SEPARATORS = set(",.;:!?'\"()[]{}<>/\\|-_~`@#$%^&*+=") | set(
    "，。、；：！？“”‘’（）【】《》〈〉「」『』〔〕…—–～·•・﹏")
_CODE = re.compile(r"^\d{6}$")
_REWARD = re.compile(r"^[A-Z0-9]{1,20}")
_LATIN = re.compile(r"[A-Z]")


@dataclass(frozen=True)
class Command:
    kind: str
    arg: str = ""  # reward code (redeem, auto_redeem), six digits (confirm),
    # text as sent (makeup, complaint), a ticket reference (ticket_status)
    text: str = ""  # the message after NFKC and trimming


def normalise(text: str) -> str:
    """NFKC (full-width letters, digits, spaces and punctuation become half-width), trimmed."""
    return unicodedata.normalize("NFKC", text or "").strip()


def _flat(text: str) -> str:
    """Upper-case with separators as spaces, character for character (same length)."""
    out = []
    for ch in text:
        if ch in _SEPARATORS or ch.isspace():
            out.append(" ")
        else:
            up = ch.upper()
            out.append(up if len(up) == 1 else ch)
    return "".join(out)


def _strip_separators(text: str) -> str:
    i = 0
    while i < len(text) and (text[i] in _SEPARATORS or text[i].isspace()):
        i += 1
    return text[i:].strip()


def _raw_after(raw: str, end: int) -> str:
    """What follows the first ``end`` characters of NFKC(``raw``) in ``raw`` itself."""
    done = 0
    for i, ch in enumerate(raw):
        if done >= end:
            return raw[i:]
        done += len(unicodedata.normalize("NFKC", ch))
    return ""


# MO texts repeat all the time (JF, jf?, 积分...) and a Command is immutable, so a spelling is
# parsed once (it was a sixth of the handler's CPU per MO). Only short texts are kept: long
# ones are ticket texts, sent once.
_CACHED_LENGTH = 40


def parse(text: str) -> Command:
    """The command an MO message asks for. Ticket text (BD, TS) is kept as sent."""
    if isinstance(text, str) and len(text) <= _CACHED_LENGTH:
        return _parse_cached(text)
    return _parse(text)


@lru_cache(maxsize=4096)
def _parse_cached(text: str) -> Command:
    return _parse(text)


def _parse(text: str) -> Command:
    raw = (text or "").strip()
    nfkc = normalise(raw)
    flat = _flat(nfkc)
    start = len(flat) - len(flat.lstrip())
    head = flat[start:]
    compact = head.replace(" ", "")
    if _CODE.match(compact):
        return Command(CONFIRM, compact, nfkc)
    for word in _BY_LENGTH:
        if not head.startswith(word):
            continue
        after = head[len(word):]
        if _LATIN.match(word[-1]) and after and _LATIN.match(after[0]):
            continue  # "JFK" is not "JF"
        kind = KEYWORDS[word]
        rest_raw = _strip_separators(_raw_after(raw, start + len(word)))
        rest = " ".join(after.split())
        if kind in (REDEEM, AUTO_REDEEM):
            m = _REWARD.match(rest)
            return Command(kind, m.group(0) if m else "", nfkc)
        if kind == CONFIRM:
            digits = rest.replace(" ", "")
            return Command(CONFIRM, digits if _CODE.match(digits) else "", nfkc)
        if kind == TICKET_STATUS:  # the ticket reference
            m = _REWARD.match(rest.replace(" ", ""))
            return Command(TICKET_STATUS, m.group(0) if m else "", nfkc)
        if kind in (MAKEUP, COMPLAINT):
            return Command(kind, rest_raw, nfkc)
        return Command(kind, "", nfkc)
    return Command(UNKNOWN, "", nfkc)
