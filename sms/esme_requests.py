"""Requests of the ESME session and their responses: sequence numbers, response timeouts,
and the write buffer (a mixin of ESMEProtocol, sms/esme_protocol.py, kept apart for size).

It relies on the protocol's ``state``, ``config``, ``clock``, ``transport``, ``log``,
``_seq``, ``_timeouts_in_row``, ``_link_dead`` and on ``_outstanding``, ``_timeout_call``
and ``_wbuf``, which the protocol sets up.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from sms.esme_types import PermanentError, TemporaryError
from sms.pdu import Pdu, encode_pdu


@dataclass(slots=True)
class _Outstanding:
    """A request awaiting its response: ``on_result(pdu_or_failure, arg)`` is called once."""

    command: str
    on_result: Callable[[Pdu | Failure, Any], Any]
    arg: Any
    deadline: float  # clock.seconds() after which it times out


def _fire(result: Pdu | Failure, d: defer.Deferred) -> None:
    if isinstance(result, Failure):
        d.errback(result)
    else:
        d.callback(result)


# Requests whose deadlines are this close are timed out together: one timer serves them all,
# and a float rounding in its delay must not leave it firing just short of a deadline.
_TIMER_SLACK_S = 1e-6


class RequestMixin:
    """_request / _send_request, the one response timer, and _write / _flush_writes."""

    _outstanding: dict[int, _Outstanding]
    _timeout_call: IDelayedCall | None
    _wbuf: list[bytes] | None

    def _write(self, data: bytes) -> None:
        if self.transport is not None and self.state != "closed":
            if self._wbuf is not None:
                self._wbuf.append(data)
            else:
                self.transport.write(data)

    def _flush_writes(self) -> None:
        buf = self._wbuf
        if buf:
            data = b"".join(buf) if len(buf) > 1 else buf[0]
            buf.clear()
            if self.transport is not None and self.state != "closed":
                self.transport.write(data)

    def _resolve(self, out: _Outstanding, result: Pdu | Failure) -> None:
        """Hand a request its outcome. An exception from the callback is logged and goes no
        further, as when a Deferred caught it: it must not break reading the connection."""
        try:
            out.on_result(result, out.arg)
        except Exception:
            self.log.failure("handling the outcome of {cmd} failed", cmd=out.command)

    def _next_seq(self) -> int:
        self._seq = self._seq + 1 if self._seq < 0x7FFFFFFF else 1
        return self._seq

    def _request(self, command: str, timeout: float | None = None,
                 **params: Any) -> defer.Deferred:
        """Send a request; the Deferred fires with its response Pdu or fails (timeout, lost
        connection, garbled answer)."""
        if self.state == "closed":
            return defer.fail(TemporaryError("connection lost"))
        d: defer.Deferred = defer.Deferred()
        self._send_request(command, _fire, d, timeout, params)
        return d

    def _send_request(self, command: str, on_result: Callable[[Pdu | Failure, Any], Any],
                      arg: Any, timeout: float | None, params: dict[str, Any]) -> None:
        """Send a request; ``on_result(response or Failure, arg)`` is called once. (What
        _request does without a Deferred: submit_sm, once per MT part, uses it directly.)"""
        seq = self._next_seq()
        try:
            data = encode_pdu(command, seq, **params)
        except (ValueError, TypeError, struct.error, UnicodeError) as exc:
            # A value the PDU cannot carry: it fails here, for good. Registered first, it
            # would wait for a response that cannot come and count as a timeout of the link.
            self._resolve(_Outstanding(command, on_result, arg, 0.0), Failure(PermanentError(
                f"{command} cannot be encoded: {exc}")))
            return
        deadline = self.clock.seconds() + (
            self.config.response_timeout_s if timeout is None else timeout)
        self._outstanding[seq] = _Outstanding(command, on_result, arg, deadline)
        self._arm_timeout(deadline)
        self._write(data)

    def _arm_timeout(self, deadline: float) -> None:
        # One timer for all outstanding requests, set for the earliest deadline: not a timer
        # per request set and cancelled for every PDU (two heap operations on the reactor).
        call = self._timeout_call
        if call is None or not call.active():
            self._timeout_call = self.clock.callLater(
                max(0.0, deadline - self.clock.seconds()), self._check_timeouts)
        elif deadline < call.getTime():
            call.reset(max(0.0, deadline - self.clock.seconds()))

    def _check_timeouts(self) -> None:
        self._timeout_call = None
        now = self.clock.seconds() + _TIMER_SLACK_S
        for seq in [seq for seq, out in self._outstanding.items() if out.deadline <= now]:
            self._on_timeout(seq)
        if self._outstanding and self.state != "closed":
            self._arm_timeout(min(out.deadline for out in self._outstanding.values()))

    def _on_timeout(self, seq: int) -> None:
        out = self._outstanding.pop(seq, None)
        if out is None:
            return
        self._timeouts_in_row += 1
        self.log.warn("no {cmd}_resp within timeout (seq={seq}, {n} in a row)",
                      cmd=out.command, seq=seq, n=self._timeouts_in_row)
        self._resolve(out, Failure(TemporaryError(f"{out.command} response timeout")))
        if out.command == "enquire_link" or self._timeouts_in_row >= self.config.max_timeouts:
            self._link_dead(f"{self._timeouts_in_row} response timeouts")
