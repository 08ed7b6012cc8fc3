"""What the MO handler does with a message that fails, and with a message sent twice.

A message whose handling raises is tried again after a backoff (``retry_base_s * 2**(n-1)``
seconds after the n-th failure) and, after ``max_attempts`` failures, set aside: state
``set_aside``, the subscriber gets one "temporarily unavailable" reply, and ops see it in
``loyalty queues list`` (and can ``retry`` it). Only a lost database connection
(``uow.messaging.connection_lost``) is retried for the whole batch: it says nothing about the
message. The other messages of the batch are handled meanwhile, so one member's bad data
never holds up anyone else.

A message repeated inside the redelivery window (``smpp.mo_dedupe_window_s``) is stored again,
marked as a repeat of the first. A question (balance, tier...) is simply answered again. A
request that changes something gets the first copy's reply again (same code, order number,
ticket reference), so an SMSC redelivery never does it twice; but when the first copy was not
acted on (rate limited, set aside), the repeat is acted on now.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from core.messages import RATE_LIMITED, SYSTEM_ERROR, UNAVAILABLE, Message
from core.messaging.records import StoredMO

# Replies that say the request was not acted on: its repeat is handled afresh.
NOT_ACTED_ON = tuple(m.template for m in (RATE_LIMITED, SYSTEM_ERROR, UNAVAILABLE))
WAIT_FOR_FIRST = timedelta(seconds=1)  # a repeat whose first copy is still waiting


def describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200]


def backoff(attempts: int, base_s: float) -> timedelta:
    """The wait after the ``attempts``-th failure."""
    return timedelta(seconds=base_s * 2 ** max(0, attempts - 1))


def repeat_reply(uow: Any, mo: StoredMO) -> tuple[str, dict[str, Any] | None]:
    """For a repeated state-changing request: ``("copy", reply row)`` to send the first
    copy's reply again, ``("wait", None)`` while the first copy is still to be handled, or
    ``("handle", None)`` to act on it now (the first copy was not acted on)."""
    state, reply = uow.messaging.mo_outcome(mo.repeat_of)
    if state == "received":
        return "wait", None
    if state == "handled" and reply is not None and reply["template"] not in NOT_ACTED_ON:
        return "copy", reply
    return "handle", None


def copied_reply(reply: dict[str, Any], mo: StoredMO, now: datetime,
                 claim_until: datetime | None) -> tuple[str, dict[str, Any]]:
    """(template, outbox row) repeating ``reply`` for the repeated message ``mo``."""
    params = reply["params"]
    if isinstance(params, str):
        try:
            params = json.loads(params or "{}")
        except ValueError:
            params = {}
    message = Message(reply["template"], params)
    return message.template, reply_row(reply["msisdn"], reply["language"], reply["kind"],
                                       message, reply["body"], mo, now, claim_until)


def reply_row(msisdn: str, language: str, kind: str, message: Message, body: str | None,
              mo: StoredMO, now: datetime, claim_until: datetime | None) -> dict[str, Any]:
    """The outbox row of the reply to ``mo``: claimed at once by this process's sender when
    ``claim_until`` is given, else queued for any sender."""
    return dict(msisdn=msisdn, language=language, kind=kind, template=message.template,
                params=message.params, body=body, dedupe_key=f"mo:{mo.id}",
                state="sending" if claim_until is not None else "queued",
                attempts=1 if claim_until is not None else 0, not_before=now,
                claimed_until=claim_until, created_at=now)
