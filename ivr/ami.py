"""Outbound voice calls through the Asterisk Manager Interface (AMI), with pyst2.

The dialer asks Asterisk to ``Originate`` a call to the subscriber and, once answered, to
continue in the dialplan (``Context``/``Exten``/``Priority``: the sample ``loyalty-warning``
context runs our ``expiry-warning`` FastAGI script, then the hotline when the member presses 1).

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

pyst2's quirks (no timeouts, replies not matched by ActionID, a ``close()`` that can hang) are
worked around in :mod:`ivr.ami_manager`; what is sent and received is built in
:mod:`ivr.ami_messages`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
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
from ivr.ami_manager import POLL_S, ActionTimeout, BoundedManager, describe_error
from ivr.ami_messages import (
    REASON_TEXT,
    AMIError,
    OriginateResult,
    check_dialer_settings,
    new_action_id,
    originate_fields,
    originate_result_from_event,
)

__all__ = [
    "AMIDialer",
    "AMIDialerService",
    "AMIError",
    "OriginateResult",
    "REASON_TEXT",
    "originate_result_from_event",
]


class _Slot:
    """Where the event thread leaves the ``OriginateResponse`` the worker is waiting for."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.headers: dict[str, str] = {}


@dataclass(frozen=True)
class _WorkerOutcome:
    headers: dict[str, str]
    logged_in_to: str | None  # the banner, when this call opened a new session


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
        context: str = "loyalty-warning",
        exten: str = "s",
        priority: int = 1,
        answer_timeout_s: float = 30,
        response_margin_s: float = 15,
        action_timeout_s: float = 10,
        max_concurrent_calls: int = 10,
        reactor: IReactorTCP,
    ) -> None:
        check_dialer_settings(
            {"caller_id": caller_id, "channel_template": channel_template,
             "context": context, "exten": exten, "username": username},
            timeouts_s=(answer_timeout_s, action_timeout_s),
            response_margin_s=response_margin_s,
            max_concurrent_calls=max_concurrent_calls, priority=priority,
        )
        self.host = host
        self.port = int(port)
        self.username = username
        self._secret = secret
        self.caller_id = caller_id
        self.channel_template = channel_template
        self.context, self.exten, self.priority = context, exten, priority  # where it enters
        self.answer_timeout_s = answer_timeout_s
        self.response_margin_s = response_margin_s
        self.action_timeout_s = action_timeout_s
        self.max_concurrent_calls = max_concurrent_calls
        self._reactor = reactor
        self._pool: ThreadPool | None = None
        self._waiters: ThreadPool | None = None  # threads waiting for OriginateResponse
        # Worker-thread state (touched only on the pool's single thread) ...
        self._mgr: BoundedManager | None = None
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
        self._stopping.set()  # waiting threads give up within POLL_S
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
        fields = originate_fields(
            msisdn,
            variables or {},
            channel=self.channel_template,
            context=self.context,
            exten=self.exten,
            priority=self.priority,
            caller_id=self.caller_id,
            answer_timeout_s=self.answer_timeout_s,
        )
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

    def _thd_session(self) -> tuple[BoundedManager, str | None]:
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
        mgr = BoundedManager(self.action_timeout_s, new_action_id)
        mgr.register_event("OriginateResponse", self._thd_on_originate_response)
        try:
            try:
                mgr.connect(self.host, self.port)
            except ActionTimeout as e:
                raise AMIError(f"{self._where()} sent no banner: {e}") from None
            except pyst_manager.ManagerException as e:
                raise AMIError(f"cannot connect to {self._where()}: {describe_error(e)}") from None
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
                raise AMIError(f"{self._where()}: login failed: {describe_error(e)}") from None
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
                       ) -> tuple[BoundedManager, _Slot, str | None]:
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
                    f"{self._where()}: no reply to Originate: {describe_error(e)}",
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

    def _thd_await_outcome(self, action_id: str, mgr: BoundedManager, slot: _Slot,
                           logged_in_to: str | None) -> _WorkerOutcome:
        """A waiting thread: the call's OriginateResponse."""
        try:
            return _WorkerOutcome(self._thd_wait_outcome(mgr, slot), logged_in_to)
        finally:
            with self._pending_lock:
                self._pending.pop(action_id, None)

    def _thd_wait_outcome(self, mgr: BoundedManager, slot: _Slot) -> dict[str, str]:
        limit = self.answer_timeout_s + self.response_margin_s
        deadline = time.monotonic() + limit
        while not slot.arrived.wait(POLL_S):
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
