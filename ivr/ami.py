"""Outbound voice calls through the Asterisk Manager Interface (AMI), with pyst2.

The dialer asks Asterisk to ``Originate`` a call to the subscriber and to run our FastAGI
script (``Application: AGI``, ``Data: agi://.../expiry-warning``) when the call is answered.

pyst2's :class:`asterisk.manager.Manager` is blocking and threaded: it reads the socket on a
thread of its own, hands events to another, and matches a reply to whatever action is waiting,
not by ActionID. So every action runs on one dedicated worker thread, one at a time, and the
Twisted side only sees Deferreds built with ``deferToThreadPool``. Nothing Twisted runs on that
thread: the worker functions (``_thd_*``) return plain values or raise :class:`AMIError`.

``Async: true`` makes Asterisk reply at once ("Originate successfully queued"); the outcome
comes later (after up to ``answer_timeout_s`` of ringing) as an ``OriginateResponse`` event,
which Asterisk sends to *every* manager session allowed to read ``call`` events. We give each
Originate a unique ActionID and wait for the event carrying that ActionID, ignoring all others.
The waiting happens on a second pool of up to ``max_concurrent_calls`` threads, so the worker
is free to send the next Originate while earlier calls ring.

pyst2 quirks worked around here (see :class:`_Manager`): no timeout anywhere (connect, banner,
replies), replies not matched by ActionID, ``close()`` blocking until the server closes the
socket, a Manager object cannot be reconnected (its threads start once), and an exception in an
event handler silently kills its event thread.
"""

from __future__ import annotations

import queue
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from asterisk import manager as pyst_manager
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTCP
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from core.domain import mask_msisdn

__all__ = [
    "AMIDialer",
    "AMIDialerService",
    "AMIError",
    "OriginateResult",
    "REASON_TEXT",
]

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
_VARIABLE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# CR/LF would inject AMI headers; Asterisk splits a Variable header on commas and treats quotes
# and backslashes as quoting (AST_STANDARD_APP_ARGS), so none of those may appear in a value.
_FORBIDDEN_VALUE_CHARS = frozenset('\r\n,"\\')
_POLL_S = 0.05




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


# --------------------------------------------------------------------------------------------
# pyst2, made bounded (worker-thread side: no Twisted below this line until AMIDialer)


class _ActionTimeout(pyst_manager.ManagerException):
    """No reply within the action timeout."""


class _ConnectionLost(pyst_manager.ManagerSocketException):
    """The connection closed (or was never there) before a reply came."""


class _Manager(pyst_manager.Manager):
    """pyst2's Manager with timeouts, replies matched by ActionID, and a close that cannot hang.

    Overrides ``connect`` (connect timeout, buffered reads, banner timeout), ``send_action``
    (bounded wait, stale replies with another ActionID dropped, the caller's dict not mutated)
    and ``close`` (bounded Logoff, then shut the socket down so pyst2's reader thread ends).
    pyst2's reader, message and event threads and its parser are used as they are.
    """

    def __init__(self, timeout_s: float, next_action_id: Callable[[], str]) -> None:
        self._timeout_s = timeout_s
        self._next_action_id = next_action_id
        self._raw: socket.socket | None = None
        self._write_lock = threading.Lock()
        self._closed = False
        super().__init__()
        self.message_thread.name = "pyst2-ami-messages"
        self.event_dispatch_thread.name = "pyst2-ami-events"

    def is_connected(self) -> bool:
        return self._connected.is_set()

    def connect(self, host: str, port: int = 5038) -> Any:
        try:
            raw = socket.create_connection((host, int(port)), timeout=self._timeout_s)
        except OSError as e:
            raise pyst_manager.ManagerSocketException(e.errno, e.strerror or str(e)) from e
        raw.settimeout(None)  # reads block; waits are bounded by the queue timeouts instead
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self._raw = raw
        # pyst2 uses an unbuffered file and so reads the socket one byte per system call.
        self._sock = raw.makefile(mode="rwb")
        self._connected.set()
        self._running.set()
        self.message_thread.start()
        self.event_dispatch_thread.start()
        banner = self._wait_response(None, "the AMI banner")
        if not self.title:
            raise pyst_manager.ManagerException("the server did not greet as an Asterisk manager")
        return banner

    def send_action(self, cdict: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        fields = dict(cdict or {})
        fields.update(kwargs)
        fields.setdefault("ActionID", self._next_action_id())
        lines = []
        for key, value in fields.items():
            for item in value if isinstance(value, list) else [value]:
                lines.append(f"{key}: {item}")
        payload = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
        if not self._connected.is_set():
            raise _ConnectionLost(0, "not connected")
        try:
            with self._write_lock:
                self._sock.write(payload)
                self._sock.flush()
        except (OSError, ValueError) as e:  # ValueError: pyst2's reader already closed the file
            raise _ConnectionLost(getattr(e, "errno", 0), str(e)) from e
        return self._wait_response(fields["ActionID"], fields.get("Action", "action"))

    def _wait_response(self, action_id: str | None, what: str) -> Any:
        deadline = time.monotonic() + self._timeout_s
        while True:
            try:
                response = self._response_queue.get(timeout=_POLL_S)
            except queue.Empty:
                if not self._connected.is_set():
                    # Let pyst2's message thread hand over what it read before the close.
                    self.message_thread.join(0.5)
                    try:
                        response = self._response_queue.get_nowait()
                    except queue.Empty:
                        raise _ConnectionLost(0, f"connection closed before {what}") from None
                elif time.monotonic() >= deadline:
                    raise _ActionTimeout(f"no {what} within {self._timeout_s:g}s") from None
                else:
                    continue
            if response is None:
                raise _ConnectionLost(0, f"connection closed before {what}")
            got = response.get_header("ActionID")
            if action_id is not None and got is not None and got != action_id:
                continue  # a late reply to an action that timed out earlier
            return response

    def close(self) -> None:
        """Log off (bounded) and tear the connection down. Idempotent; also run by ``__del__``."""
        if getattr(self, "_closed", True):
            return
        if self._connected.is_set():
            try:
                self.send_action({"Action": "Logoff"})
            except pyst_manager.ManagerException:
                pass
        self.abort()

    def abort(self) -> None:
        """Tear the connection down without logging off."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        raw = self._raw
        if raw is not None:
            try:
                raw.shutdown(socket.SHUT_RDWR)  # wakes pyst2's reader with EOF
            except OSError:
                pass
        current = threading.current_thread()
        if self.message_thread.is_alive() and self.message_thread is not current:
            self.message_thread.join(self._timeout_s)
        self._event_queue.put(None)  # in case the message thread died without telling it
        if self.event_dispatch_thread.is_alive() and self.event_dispatch_thread is not current:
            self.event_dispatch_thread.join(self._timeout_s)
        self._running.clear()
        self._connected.clear()
        if raw is not None:
            try:
                self._sock.close()
            except (OSError, ValueError):
                pass
            raw.close()

    def wait_events_delivered(self, timeout_s: float) -> None:
        """After the connection closed: wait until every event read before it was dispatched."""
        if self.event_dispatch_thread.is_alive():
            self.event_dispatch_thread.join(timeout_s)


class _Slot:
    """Where the event thread leaves the ``OriginateResponse`` the worker is waiting for."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.headers: dict[str, str] = {}


@dataclass(frozen=True)
class _WorkerOutcome:
    headers: dict[str, str]
    logged_in_to: str | None  # the banner, when this call opened a new session


# --------------------------------------------------------------------------------------------


class AMIDialer:
    """Places outbound calls through AMI ``Originate``, one action at a time on its own thread.

    ``start()`` / ``stop()`` (or :class:`AMIDialerService`) own the worker thread. The AMI
    session is opened lazily by the first originate, kept, checked with a ``Ping`` before each
    reuse, reopened after any failure, and logged off by ``stop()``.
    """

    log = Logger()

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        caller_id: str,
        channel_template: str = "Local/{msisdn}@from-loyalty",
        fastagi_url: str = "agi://127.0.0.1:4573/expiry-warning",
        answer_timeout_s: float = 30,
        response_margin_s: float = 15,
        action_timeout_s: float = 10,
        max_concurrent_calls: int = 10,
        reactor: IReactorTCP,
    ) -> None:
        for name, value in (
            ("caller_id", caller_id),
            ("channel_template", channel_template),
            ("fastagi_url", fastagi_url),
            ("username", username),
        ):
            if "\r" in value or "\n" in value:
                raise ValueError(f"AMI {name} must not contain line breaks")
        if "{msisdn}" not in channel_template:
            raise ValueError("AMI channel_template must contain {msisdn}")
        if answer_timeout_s <= 0 or response_margin_s < 0 or action_timeout_s <= 0:
            raise ValueError("AMI timeouts must be positive")
        if max_concurrent_calls < 1:
            raise ValueError("AMI max_concurrent_calls must be at least 1")
        self.host = host
        self.port = int(port)
        self.username = username
        self._secret = secret
        self.caller_id = caller_id
        self.channel_template = channel_template
        self.fastagi_url = fastagi_url
        self.answer_timeout_s = answer_timeout_s
        self.response_margin_s = response_margin_s
        self.action_timeout_s = action_timeout_s
        self.max_concurrent_calls = max_concurrent_calls
        self._reactor = reactor
        self._pool: ThreadPool | None = None
        self._waiters: ThreadPool | None = None  # threads waiting for OriginateResponse
        # Worker-thread state (touched only on the pool's single thread) ...
        self._mgr: _Manager | None = None
        # ... except these, shared with pyst2's event thread and the reactor.
        self._pending: dict[str, _Slot] = {}
        self._pending_lock = threading.Lock()
        self._stopping = threading.Event()

    def __repr__(self) -> str:
        return f"<AMIDialer {self.username}@{self.host}:{self.port}>"

    # -- lifecycle (reactor thread) ----------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._pool is not None

    def start(self) -> None:
        if self._pool is not None:
            return
        self._stopping.clear()
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="ami-dialer")
        self._pool.start()
        self._waiters = ThreadPool(minthreads=0, maxthreads=self.max_concurrent_calls,
                                   name="ami-wait")
        self._waiters.start()

    def stop(self) -> Deferred[None]:
        """Fail waiting originates, log off, stop the thread. Fires when all that is done."""
        pool, waiters = self._pool, self._waiters
        if pool is None:
            return succeed(None)
        self._pool = self._waiters = None
        self._stopping.set()  # waiting threads give up within _POLL_S
        d = deferToThreadPool(self._reactor, pool, self._thd_close)

        def finished(result: Any) -> None:
            pool.stop()
            if waiters is not None:
                waiters.stop()
            if isinstance(result, Failure):
                self.log.failure("AMI dialer did not close cleanly", result)
            elif result:
                self.log.info("AMI logged off from {host}:{port}", host=self.host, port=self.port)

        d.addBoth(finished)
        return d

    # -- originate (reactor thread) ----------------------------------------------------------

    def originate(
        self, msisdn: str, variables: Mapping[str, str] | None = None
    ) -> Deferred[OriginateResult]:
        """Call ``msisdn`` and, once answered, run the FastAGI script on the call.

        ``variables`` become channel variables (``Variable: NAME=value``), readable from the
        FastAGI script with ``GET VARIABLE``. Fires with an :class:`OriginateResult` for every
        call outcome Asterisk reports (answered, no answer, busy...), or fails with
        :class:`AMIError` when the dialer could not find out (connection, login, timeout).
        Invalid arguments raise ``ValueError`` at once.
        """
        fields = self._originate_fields(msisdn, variables or {})
        action_id = fields["ActionID"]
        masked = mask_msisdn(msisdn)
        if self._pool is None:
            return fail(AMIError("AMI dialer is not running"))
        self.log.info(
            "AMI originate {action_id}: calling {msisdn}", action_id=action_id, msisdn=masked
        )
        waiters = self._waiters
        d = deferToThreadPool(self._reactor, self._pool, self._thd_originate, action_id, fields)
        d.addCallback(lambda sent: deferToThreadPool(self._reactor, waiters,
                                                     self._thd_await_outcome, action_id, *sent))
        d.addCallbacks(
            self._originated,
            self._originate_failed,
            callbackArgs=(action_id, masked),
            errbackArgs=(action_id, masked),
        )
        return d

    def _originate_fields(self, msisdn: str, variables: Mapping[str, str]) -> dict[str, Any]:
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
            "ActionID": f"loyalty-{uuid.uuid4().hex}",
            "Channel": self.channel_template.format(msisdn=msisdn),
            "Application": "AGI",
            "Data": self.fastagi_url,
            "CallerID": self.caller_id,
            "Timeout": str(int(round(self.answer_timeout_s * 1000))),
            "Async": "true",
        }
        if entries:
            fields["Variable"] = entries
        return fields

    def _originated(self, outcome: _WorkerOutcome, action_id: str, masked: str) -> OriginateResult:
        if outcome.logged_in_to:
            self.log.info(
                "AMI logged in to {host}:{port} as {username} ({banner})",
                host=self.host,
                port=self.port,
                username=self.username,
                banner=outcome.logged_in_to,
            )
        result = originate_result_from_event(outcome.headers)
        self.log.info(
            "AMI originate {action_id} to {msisdn}: {outcome}"
            " (reason {reason}, uniqueid {uniqueid})",
            action_id=action_id,
            msisdn=masked,
            outcome=result.reason_text,
            reason=result.reason,
            uniqueid=result.uniqueid,
        )
        return result

    def _originate_failed(self, failure: Failure, action_id: str, masked: str) -> Failure:
        if not failure.check(AMIError):
            failure = Failure(AMIError(f"AMI client error: {failure.getErrorMessage()}"))
        self.log.warn(
            "AMI originate {action_id} to {msisdn} failed: {error}"
            " (call may have been placed: {call_may_be_placed})",
            action_id=action_id,
            msisdn=masked,
            error=failure.value.message,
            call_may_be_placed=failure.value.call_may_be_placed,
        )
        return failure

    # -- worker thread ------------------------------------------------------------------------

    def _where(self) -> str:
        return f"AMI at {self.host}:{self.port}"

    def _thd_next_action_id(self) -> str:
        return f"loyalty-{uuid.uuid4().hex}"

    def _thd_drop(self) -> None:
        mgr, self._mgr = self._mgr, None
        if mgr is not None:
            mgr.abort()

    def _thd_close(self) -> bool:
        mgr, self._mgr = self._mgr, None
        if mgr is None or not mgr.is_connected():
            if mgr is not None:
                mgr.abort()
            return False
        mgr.close()
        return True

    def _thd_session(self) -> tuple[_Manager, str | None]:
        """The logged-in session: the kept one if a Ping says it is alive, else a new one."""
        mgr = self._mgr
        if mgr is not None:
            if mgr.is_connected():
                try:
                    pong = mgr.send_action({"Action": "Ping"})
                    if pong.get_header("Response") in ("Success", "Pong"):
                        return mgr, None
                except pyst_manager.ManagerException:
                    pass
            self._thd_drop()
        mgr = _Manager(self.action_timeout_s, self._thd_next_action_id)
        mgr.register_event("OriginateResponse", self._thd_on_originate_response)
        try:
            try:
                mgr.connect(self.host, self.port)
            except _ActionTimeout as e:
                raise AMIError(f"{self._where()} sent no banner: {e}") from None
            except pyst_manager.ManagerException as e:
                raise AMIError(f"cannot connect to {self._where()}: {_describe(e)}") from None
            try:
                reply = mgr.send_action(
                    {
                        "Action": "Login",
                        "Username": self.username,
                        "Secret": self._secret,
                        "Events": "call",  # OriginateResponse is a "call" event; skip the rest
                    }
                )
            except pyst_manager.ManagerException as e:
                raise AMIError(f"{self._where()}: login failed: {_describe(e)}") from None
            if reply.get_header("Response") != "Success":
                message = reply.get_header("Message") or "no reason given"
                raise AMIError(
                    f"{self._where()} refused login for user {self.username!r}: {message}"
                )
        except BaseException:
            mgr.abort()
            raise
        self._mgr = mgr
        return mgr, f"{mgr.title}/{mgr.version}"

    def _thd_originate(self, action_id: str, fields: dict[str, Any]
                       ) -> tuple[_Manager, _Slot, str | None]:
        """Worker thread: send the Originate (the slot waits for its event from now on)."""
        if self._stopping.is_set():
            raise AMIError("AMI dialer is stopping")
        mgr, logged_in_to = self._thd_session()
        slot = _Slot()
        with self._pending_lock:
            self._pending[action_id] = slot
        try:
            try:
                reply = mgr.send_action(fields)
            except pyst_manager.ManagerException as e:
                self._thd_drop()
                raise AMIError(
                    f"{self._where()}: no reply to Originate: {_describe(e)}",
                    call_may_be_placed=True,
                ) from None
            if reply.get_header("Response") != "Success":
                message = reply.get_header("Message") or "no reason given"
                raise AMIError(f"{self._where()} rejected Originate: {message}")
        except BaseException:
            with self._pending_lock:
                self._pending.pop(action_id, None)
            raise
        return mgr, slot, logged_in_to

    def _thd_await_outcome(self, action_id: str, mgr: _Manager, slot: _Slot,
                           logged_in_to: str | None) -> _WorkerOutcome:
        """A waiting thread: the call's OriginateResponse."""
        try:
            return _WorkerOutcome(self._thd_wait_outcome(mgr, slot), logged_in_to)
        finally:
            with self._pending_lock:
                self._pending.pop(action_id, None)

    def _thd_wait_outcome(self, mgr: _Manager, slot: _Slot) -> dict[str, str]:
        limit = self.answer_timeout_s + self.response_margin_s
        deadline = time.monotonic() + limit
        while not slot.arrived.wait(_POLL_S):
            if self._stopping.is_set():  # (stop() closes the session too: say why)
                raise AMIError(
                    "AMI dialer stopped while waiting for OriginateResponse",
                    call_may_be_placed=True,
                )
            if not mgr.is_connected():
                mgr.wait_events_delivered(1.0)
                if slot.arrived.is_set():
                    break
                # (the worker drops the dead session before its next action)
                raise AMIError(
                    f"{self._where()}: connection lost while waiting for OriginateResponse",
                    call_may_be_placed=True,
                )
            if time.monotonic() >= deadline:
                raise AMIError(
                    f"{self._where()}: no OriginateResponse within {limit:g}s",
                    call_may_be_placed=True,
                )
        return slot.headers

    def _thd_on_originate_response(self, event: Any, _manager: Any) -> None:
        """pyst2 event thread. Must not raise: an exception here ends pyst2's event thread."""
        try:
            action_id = event.get_header("ActionID")
            if not action_id:
                return
            with self._pending_lock:
                slot = self._pending.get(action_id)
            if slot is None or slot.arrived.is_set():
                return  # another client's originate, or one we gave up on
            slot.headers = {k: v for k, v in event.headers.items() if isinstance(v, str)}
            slot.arrived.set()
        except Exception:  # noqa: BLE001 - see docstring
            pass


def _describe(error: BaseException) -> str:
    """pyst2's socket exceptions carry (errno, strerror) args; say it in words."""
    args = getattr(error, "args", ())
    if len(args) == 2 and isinstance(args[1], str):
        return args[1]
    return str(error) or type(error).__name__


class AMIDialerService(Service):
    """Starts and stops an :class:`AMIDialer`'s worker thread with the service tree."""

    name = "ami-dialer"

    def __init__(self, dialer: AMIDialer) -> None:
        self.dialer = dialer

    def startService(self) -> None:
        super().startService()
        self.dialer.start()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self.dialer.stop()
