"""pyst2's AMI Manager made bounded, for use on a worker thread (nothing Twisted here).

pyst2 has no timeout anywhere (connect, banner, replies), does not match replies by ActionID,
blocks in ``close()`` until the server closes the socket, cannot reconnect a Manager (its
threads start once), and silently loses its event thread to an exception in a handler.
:class:`BoundedManager` works around the first four; event handlers must not raise.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from asterisk import manager as pyst_manager

#: How often a blocked wait looks again at the connection and the stop flag.
POLL_S = 0.05


class ActionTimeout(pyst_manager.ManagerException):
    """No reply within the action timeout."""


class ConnectionLost(pyst_manager.ManagerSocketException):
    """The connection closed (or was never there) before a reply came."""


class BoundedManager(pyst_manager.Manager):
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
            raise ConnectionLost(0, "not connected")
        try:
            with self._write_lock:
                self._sock.write(payload)
                self._sock.flush()
        except (OSError, ValueError) as e:  # ValueError: pyst2's reader already closed the file
            raise ConnectionLost(getattr(e, "errno", 0), str(e)) from e
        return self._wait_response(fields["ActionID"], fields.get("Action", "action"))

    def _wait_response(self, action_id: str | None, what: str) -> Any:
        deadline = time.monotonic() + self._timeout_s
        while True:
            try:
                response = self._response_queue.get(timeout=POLL_S)
            except queue.Empty:
                if not self._connected.is_set():
                    # Let pyst2's message thread hand over what it read before the close.
                    self.message_thread.join(0.5)
                    try:
                        response = self._response_queue.get_nowait()
                    except queue.Empty:
                        raise ConnectionLost(0, f"connection closed before {what}") from None
                elif time.monotonic() >= deadline:
                    raise ActionTimeout(f"no {what} within {self._timeout_s:g}s") from None
                else:
                    continue
            if response is None:
                raise ConnectionLost(0, f"connection closed before {what}")
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


def describe_error(error: BaseException) -> str:
    """pyst2's socket exceptions carry (errno, strerror) args; say it in words."""
    args = getattr(error, "args", ())
    if len(args) == 2 and isinstance(args[1], str):
        return args[1]
    return str(error) or type(error).__name__
