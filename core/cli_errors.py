"""What the ``loyalty`` command says when a failure is the operator's to fix.

``core.cli.main`` hands every exception a subcommand raises to ``explain``: an expected one
(bad configuration, a database that cannot be reached or is behind, a member or order that does
not exist, a path that is not there) becomes one line saying what is wrong and what to do, and
an exit status; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from core.config import ConfigError
from core.domain import (
    DomainError,
    InvalidMsisdn,
    OrderNotCancellable,
    TicketAlreadyResolved,
    UnknownMember,
    UnknownOrder,
    UnknownTicket,
    mask_msisdn,
)
from core.import_csv import ImportFailed
from core.store import DatabaseUnreachable, SchemaBehind

# Exit statuses: 1 the request was refused or a file is wrong, 2 the set-up is wrong
# (configuration, database); 130 and 141 are the shell's for Ctrl-C and a closed pipe.
REFUSED, SETUP, INTERRUPTED, PIPE_CLOSED = 1, 2, 130, 141


@dataclass(frozen=True)
class Failure:
    message: str
    status: int


def explain(exc: BaseException) -> Failure | None:
    """The one-line message and exit status for an expected failure; None for anything else."""
    if isinstance(exc, ConfigError):
        return Failure(f"configuration error: {exc}", SETUP)
    if isinstance(exc, SchemaBehind | DatabaseUnreachable):
        return Failure(str(exc), SETUP)
    if isinstance(exc, ImportFailed):  # the message lists the bad lines
        return Failure(str(exc), REFUSED)
    if isinstance(exc, DomainError):
        return Failure(_domain_message(exc), REFUSED)
    if isinstance(exc, BrokenPipeError):  # the reader went away (`| head`): nothing to say
        _discard_stdout()
        return Failure("", PIPE_CLOSED)
    if isinstance(exc, OSError):
        return Failure(_os_message(exc), REFUSED)
    if isinstance(exc, KeyboardInterrupt):
        return Failure("interrupted", INTERRUPTED)
    return None


def _domain_message(exc: DomainError) -> str:
    given = str(exc.args[0]) if exc.args else ""
    if isinstance(exc, UnknownMember):
        # Named in the numbering plan's national form by the use case that did not find it.
        return (f"no member {mask_msisdn(given)}: check the number, or add the member with "
                "`loyalty import members FILE`")
    if isinstance(exc, UnknownOrder):
        return (f"no order {given}: check the order number (`loyalty member show MSISDN` "
                "lists a member's orders)")
    if isinstance(exc, OrderNotCancellable):
        return (f"cannot cancel: {exc}; only a confirmed order that has not shipped can be "
                "cancelled")
    if isinstance(exc, UnknownTicket):
        return (f"no ticket {given}: check the reference (`loyalty tickets list` lists "
                "them)")
    if isinstance(exc, TicketAlreadyResolved):
        return f"refused: {exc}"
    if isinstance(exc, InvalidMsisdn):
        return f"{exc}: give a mobile number such as 13800138000 or +86 138 0013 8000"
    return f"error: {exc}"


def _discard_stdout() -> None:
    # Output still buffered for the closed pipe would fail again when Python exits.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _os_message(exc: OSError) -> str:
    reason = (exc.strerror or str(exc)).lower()
    if exc.filename is None:
        return f"error: {reason}"
    return f"{exc.filename}: {reason}"
