"""What the AMI dialer sends (the ``Originate`` action) and what a call ends with."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.domain import mask_msisdn

#: ``Reason`` of an ``OriginateResponse`` event: the last call-progress control frame Asterisk
#: saw while dialling (``AST_CONTROL_*`` in ``frame.h``; ``__ast_request_and_dial`` in
#: ``main/channel.c``). 0: the channel could not be created or called (or timed out before any
#: progress); 1: hung up/rejected before answer; 3: rang out without answer; 4: answered;
#: 5: busy; 8: congestion.
REASON_TEXT: dict[int, str] = {
    0: "failed",
    1: "hangup",
    2: "no-answer",
    3: "no-answer",
    4: "answered",
    5: "busy",
    8: "congestion",
}

_MSISDN_RE = re.compile(r"^\+?[0-9]{3,20}$")
#: A context or extension name the sample dialplan could use (no spaces, commas or quotes).
DIALPLAN_NAME_RE = re.compile(r"^[A-Za-z0-9_+.-]{1,79}$")
_VARIABLE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# CR/LF would inject AMI headers; Asterisk splits a Variable header on commas and treats quotes
# and backslashes as quoting (AST_STANDARD_APP_ARGS), so none of those may appear in a value.
_FORBIDDEN_VALUE_CHARS = frozenset('\r\n,"\\')


class AMIError(Exception):
    """An originate could not be done or its outcome is unknown.

    ``call_may_be_placed`` is true when Asterisk may have accepted the Originate before the
    failure (lost connection or no ``OriginateResponse`` in time): retrying at once could ring
    the subscriber twice.
    """

    def __init__(self, message: str, *, call_may_be_placed: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.call_may_be_placed = call_may_be_placed

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class OriginateResult:
    """The outcome of one originate, from Asterisk's ``OriginateResponse`` event."""

    answered: bool
    reason: int
    reason_text: str
    uniqueid: str | None
    channel: str | None


def originate_result_from_event(headers: Mapping[str, str]) -> OriginateResult:
    """Build the result from an ``OriginateResponse`` event's headers."""
    answered = headers.get("Response", "") == "Success"
    try:
        reason = int(headers.get("Reason", "0"))
    except ValueError:
        reason = 0
    if answered:
        text = "answered"
    else:
        text = REASON_TEXT.get(reason, "failed")
        if text == "answered":  # answered, but the application could not be started
            text = "failed"
    uniqueid = headers.get("Uniqueid") or None
    if uniqueid == "<null>":
        uniqueid = None
    return OriginateResult(
        answered=answered,
        reason=reason,
        reason_text=text,
        uniqueid=uniqueid,
        channel=headers.get("Channel") or None,
    )


def new_action_id() -> str:
    """A unique ActionID, so that our replies and events are told apart from other clients'."""
    return f"loyalty-{uuid.uuid4().hex}"


def originate_fields(
    msisdn: str,
    variables: Mapping[str, str],
    *,
    channel: str,
    context: str,
    exten: str,
    priority: int,
    caller_id: str,
    answer_timeout_s: float,
) -> dict[str, Any]:
    """The headers of an async ``Originate`` of ``msisdn`` (``channel`` holds ``{msisdn}``).

    The answered call goes into the dialplan at ``context``/``exten``/``priority`` (the sample
    ``loyalty-warning`` context), not straight to an AGI application: the dialplan runs the
    warning AGI and, when the member presses 1, continues to the hotline after it.

    Raises ``ValueError`` for a number or a channel variable AMI cannot carry safely.
    """
    if not isinstance(msisdn, str) or not _MSISDN_RE.match(msisdn):
        raise ValueError(f"not a phone number to dial: {mask_msisdn(str(msisdn))}")
    entries = []
    for name, value in variables.items():
        if not isinstance(name, str) or not _VARIABLE_NAME_RE.match(name):
            raise ValueError(f"bad channel variable name: {name!r}")
        value = str(value)
        if _FORBIDDEN_VALUE_CHARS.intersection(value):
            raise ValueError(f"channel variable {name} has a character AMI cannot carry")
        entries.append(f"{name}={value}")
    fields: dict[str, Any] = {
        "Action": "Originate",
        "ActionID": new_action_id(),
        "Channel": channel.format(msisdn=msisdn),
        "Context": context,
        "Exten": exten,
        "Priority": str(priority),
        "CallerID": caller_id,
        "Timeout": str(int(round(answer_timeout_s * 1000))),
        "Async": "true",
    }
    if entries:
        fields["Variable"] = entries
    return fields


def check_dialer_settings(
    header_values: Mapping[str, str],
    *,
    timeouts_s: tuple[float, ...],
    response_margin_s: float,
    max_concurrent_calls: int,
    priority: int = 1,
) -> None:
    """Raise ``ValueError`` for dialer settings that would break or inject AMI headers."""
    if priority < 1:
        raise ValueError("AMI priority must be at least 1")
    for name, value in header_values.items():
        if "\r" in value or "\n" in value:
            raise ValueError(f"AMI {name} must not contain line breaks")
    if "{msisdn}" not in header_values.get("channel_template", "{msisdn}"):
        raise ValueError("AMI channel_template must contain {msisdn}")
    for name in ("context", "exten"):
        if name in header_values and not DIALPLAN_NAME_RE.match(header_values[name]):
            raise ValueError(f"AMI {name} must be a dialplan name (letters, digits, - _ + .)")
    if any(t <= 0 for t in timeouts_s) or response_margin_s < 0:
        raise ValueError("AMI timeouts must be positive")
    if max_concurrent_calls < 1:
        raise ValueError("AMI max_concurrent_calls must be at least 1")
