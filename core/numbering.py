"""Subscriber numbers as they come in: one national form, and the programme's numbering plan
(``[numbering]``), the one gate every number passes (imports, SMS senders, callers, numbers
keyed in)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from core.domain import InvalidMsisdn, mask_msisdn

_FULLWIDTH_DIGITS = {0xFF10 + i: ord("0") + i for i in range(10)} | {0xFF0B: ord("+")}


@dataclass(frozen=True)
class NumberingPlan:
    """The subscriber numbers the programme serves (``[numbering]`` in the configuration).

    ``normalise`` is the one gate for every number that comes in (imports, SMS senders,
    callers, numbers keyed in): it returns the national form or raises InvalidMsisdn. A number
    written with another country code is refused, never cut to something that looks national.
    """

    country_code: str = "86"
    national_pattern: str = "1[3-9][0-9]{9}"

    def normalise(self, raw: str | None) -> str:
        if raw is None:
            raise InvalidMsisdn("no number")
        if type(raw) is str and raw.isdigit() and raw.isascii():
            text = raw  # the usual sender: nothing to strip, take out or translate
        else:
            text = _SEPARATORS.sub("", str(raw).strip()).translate(_FULLWIDTH_DIGITS)
        national = self._national(text)
        if national is None or not _compiled(self.national_pattern).fullmatch(national):
            raise InvalidMsisdn(f"outside the numbering plan: {mask_msisdn(text)}")
        return national

    def _national(self, text: str) -> str | None:
        """``text`` without its international or trunk prefix; None for another country."""
        for international in ("+", "00"):
            if text.startswith(international):
                rest = text[len(international):]
                return rest[len(self.country_code):] if rest.startswith(self.country_code) \
                    else None
        # Bare country code or trunk 0: taken off only when what is left is a national number,
        # so a national number that happens to start with the same digits is kept whole.
        national = _compiled(self.national_pattern)
        for prefix in (self.country_code, "0"):
            if text.startswith(prefix) and national.fullmatch(text[len(prefix):]):
                return text[len(prefix):]
        return text


_SEPARATORS = re.compile(r"[\s\-().]")


@lru_cache(maxsize=16)
def _compiled(pattern: str) -> re.Pattern[str]:
    """The plan's national pattern, compiled once (every SMS sender passes through it)."""
    return re.compile(pattern)
