"""The server's log observer: text lines to standard output or a file, at the configured level.

twistd would write every event, debug included; the tac hands it this observer instead (as the
application's ILogObserver), so ``[logging] level`` decides what reaches the log.
"""

from __future__ import annotations

import sys
from functools import partial

from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    ILogObserver,
    LogEvent,
    LogLevel,
    LogLevelFilterPredicate,
    formatEventAsClassicLogText,
    formatTime,
)
from twisted.python.logfile import LogFile

from core.config import ConfigError, LoggingConfig

__all__ = ["log_observer"]


def log_observer(logging_config: LoggingConfig, process_name: str = "") -> ILogObserver:
    """Lines at ``logging_config.level`` and above to ``logging_config.file``; with a
    ``process_name`` (``[process] name``) every line says which of several processes wrote it,
    first in its system field: ``2026-12-05T10:00:00+0000 [loyalty-2 loyalty#info] ...``."""
    path = logging_config.file
    try:
        out = sys.stdout if path in ("", "-") else LogFile.fromFullPath(path)
    except OSError as exc:
        raise ConfigError(f"logging.file: cannot write {path}: {exc.strerror}") from None
    level = LogLevel.levelWithName(logging_config.level)
    return FilteringLogObserver(FileLogObserver(out, partial(_line, process_name)),
                                [LogLevelFilterPredicate(defaultLogLevel=level)])


def _line(process_name: str, event: LogEvent) -> str | None:
    """twisted's classic text line (as ``textFileLogObserver`` writes it), named."""
    if process_name:
        system = event.get("log_system")
        if system is None:
            level = event.get("log_level")
            system = f"{event.get('log_namespace', '-')}#{level.name if level else '-'}"
        event = dict(event, log_system=f"{process_name} {system}")
    return formatEventAsClassicLogText(event, formatTime=formatTime)
