"""Logging the SMS channel's failures without phone numbers (database errors quote their
parameters, domain errors their subject)."""

from __future__ import annotations

import re
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure

from core.domain import mask_msisdn

_NUMBER = re.compile(r"(?<!\d)\+?\d{7,15}(?!\d)")


def scrubbed(text: str) -> str:
    """``text`` with anything that looks like a phone number masked (138****5678): database
    errors quote their parameters, domain errors their subject."""
    return _NUMBER.sub(lambda m: mask_msisdn(m.group()), text)


def log_failure(log: Logger, message: str, failure: Failure | None = None, **fields: Any) -> None:
    """Log a failure with its traceback, phone numbers masked."""
    text = scrubbed(failure.getTraceback() if failure is not None else "")
    log.error(message + "\n{traceback}", traceback=text, **fields)
