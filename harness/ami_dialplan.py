"""What the AMI simulator does with an answered call: the sample ``loyalty-warning`` context.

``config/extensions.conf`` sends an originated warning call to ``loyalty-warning,s,1``:
``AGI(${LOYALTY_AGI}/expiry-warning)``; when that AGI leaves ``LOYALTY_NEXT=hotline`` (the
member pressed 1) the same channel runs ``AGI(${LOYALTY_AGI}/loyalty,${LOYALTY_MSISDN})``.
:class:`WarningDialplan` does the same against a FastAGI server with the call simulator: one
channel (one uniqueid, the channel variables of the Originate and of the first AGI), one caller
whose keys are used across both AGIs, the caller id we presented (``CallerID`` of the
Originate). An Originate into any other place fails like a missing extension.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from twisted.logger import Logger

from harness.ami_sim_protocol import AnsweredCall
from harness.simulator import CallResult, KeySource, simulate_call

WARNING_CONTEXT = "loyalty-warning"
WARNING_EXTEN = "s"
WARNING_SCRIPT = "expiry-warning"
HOTLINE_SCRIPT = "loyalty"

log = Logger()


def presented_number(caller_id: str) -> str:
    """The number of an AMI ``CallerID`` (``"Loyalty" <10086>`` or ``10086``)."""
    match = re.search(r"<([^>]*)>", caller_id)
    return (match.group(1) if match else caller_id).strip()


class WarningDialplan:
    """The ``on_answered`` hook of :class:`harness.ami_simulator.AMISimulator` that follows the
    sample dialplan. ``keys`` maps a dialled number to what that member presses (call simulator
    keys, used across both AGIs). Each call returns the results of the AGIs it ran, in order;
    every result is also kept in :attr:`legs` as ``(number, script, result)``."""

    def __init__(self, host: str, port: int, *, keys: Mapping[str, str] | None = None,
                 language: str = "zh", prompt_text: Any = None, timeout_s: float = 20.0,
                 context: str = WARNING_CONTEXT, exten: str = WARNING_EXTEN,
                 reactor: Any = None) -> None:
        self.host = host
        self.port = port
        self.keys = dict(keys or {})
        self.language = language
        self.prompt_text = prompt_text
        self.timeout_s = timeout_s
        self.context = context
        self.exten = exten
        self.reactor = reactor
        self.legs: list[tuple[str, str, CallResult]] = []

    async def __call__(self, call: AnsweredCall) -> list[CallResult]:
        action = call.action
        place = (action.get("Context"), action.get("Exten"), action.get("Priority"))
        if place != (self.context, self.exten, "1"):
            log.warn("simulated dialplan: no extension {place} (Application={app}); the call "
                     "is hung up", place=place, app=action.get("Application"))
            return []
        variables = dict(call.variables)
        variables["LOYALTY_NEXT"] = ""  # Set(LOYALTY_NEXT=)
        caller = KeySource(self.keys.get(call.number, ""))
        callerid = presented_number(action.get("CallerID") or "")
        language = self.language
        results = []
        for script in (WARNING_SCRIPT, HOTLINE_SCRIPT):
            args = (variables.get("LOYALTY_MSISDN", ""),) if script == HOTLINE_SCRIPT else ()
            result = await simulate_call(
                self.host, self.port, script=script, callerid=callerid, language=language,
                key_source=caller, prompt_text=self.prompt_text, args=args,
                uniqueid=call.uniqueid, variables=variables, timeout_s=self.timeout_s,
                reactor=self.reactor)
            results.append(result)
            self.legs.append((call.number, script, result))
            variables.update(result.variables_set)
            language = variables.get("CHANNEL(language)", language)
            if result.hung_up_by != "server" or variables.get("LOYALTY_NEXT") != "hotline":
                break  # GotoIf(... = "hotline") not taken: Hangup()
            variables["LOYALTY_NEXT"] = ""  # (hotline),Set(LOYALTY_NEXT=)
        return results
