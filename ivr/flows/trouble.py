"""One log line per call for what went wrong in it.

A member whose data makes a query fail (corrupt lots, an unexpected error) fails every answer
of the call that reads it: the read-ahead, the menu key, the tier for the agent queue... The
caller hears ``err_system`` ("we cannot complete your request right now, please try again
later") each time; the log gets the first failure of the call as one line, the error's type
and first line with phone numbers masked, and the tracebacks only at debug level.
"""

from __future__ import annotations

import re
import sys
import traceback

from twisted.logger import Logger

from core.domain import mask_msisdn
from ivr.flows.calls import CallInfo

log = Logger()

_NUMBER = re.compile(r"(?<!\d)\+?\d{7,15}(?!\d)")


def _error_text(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {first}"[:200]
    return _NUMBER.sub(lambda m: mask_msisdn(m.group()), text)


def call_failed(info: CallInfo, what: str) -> None:
    """Log the exception being handled: one line for the call's first failure, debug after."""
    exc = sys.exc_info()[1]
    info.failures += 1
    detail = _NUMBER.sub(lambda m: mask_msisdn(m.group()), traceback.format_exc())
    if info.failures == 1:
        log.error("IVR call {uniqueid} ({caller}): {what} failed: {error}; the caller hears "
                  "err_system (later failures of this call are logged at debug level)",
                  uniqueid=info.uniqueid, caller=mask_msisdn(info.msisdn or info.caller or ""),
                  what=what, error=_error_text(exc))
    log.debug("IVR call {uniqueid}: {what} failed\n{traceback}", uniqueid=info.uniqueid,
              what=what, traceback=detail)
