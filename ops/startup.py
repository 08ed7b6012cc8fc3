"""What the server says when it cannot start, and the twistd options the tac honours.

A taken port or an address that is not this machine's is an operator's mistake, not a bug: it
gets one line naming the config key to change instead of a traceback.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Mapping
from typing import Any

from twisted.internet.error import CannotListenError


def cannot_listen(section: str, exc: CannotListenError) -> str:
    """One line for a listening port that could not be opened; ``section`` is the config
    section of the service (``fastagi``, ``ops``), whose ``host`` and ``port`` keys it used."""
    host, port = exc.interface or "*", exc.port
    code = getattr(exc.socketError, "errno", None)
    if code == errno.EADDRINUSE:
        return (f"{section}.port {port} is already in use (on {host}): stop what listens "
                f"there or set another {section}.port")
    if code == errno.EACCES:
        return (f"{section}.port {port}: no permission to listen on it (ports below 1024 "
                f"need root): set {section}.port to 1024 or above")
    if code == errno.EADDRNOTAVAIL:
        return (f"{section}.host {host} is not an address of this machine: set {section}.host "
                "to one of its addresses, or 0.0.0.0")
    reason = getattr(exc.socketError, "strerror", None) or exc.socketError
    return f"{section}: cannot listen on {host}:{port}: {reason}; check {section}.host and .port"


def twistd_options() -> dict[str, Any]:
    """The command-line options of the twistd loading the tac (empty outside twistd).

    twistd hands the tac no options, and it ignores ``-l FILE`` once the tac installs its
    own log observer; its runner, up the call stack while the tac loads, has them parsed.
    """
    from twisted.application.app import ApplicationRunner

    frame = sys._getframe(1)
    while frame is not None:
        runner = frame.f_locals.get("self")
        if isinstance(runner, ApplicationRunner):
            return dict(runner.config)
        frame = frame.f_back
    return {}


def log_file(configured: str, options: Mapping[str, Any]) -> str:
    """Where the server logs: twistd's ``-l FILE`` when given, else ``[logging] file``; but a
    daemon (twistd without ``-n``) has no standard output, so there ``-`` means ``twistd.log``
    in the working directory, as it does for twistd itself."""
    if options.get("logfile"):
        return options["logfile"]
    if options and not options.get("nodaemon") and configured in ("", "-"):
        return "twistd.log"
    return configured
