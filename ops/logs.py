"""The server's log observer: text lines to standard output or a file, at the configured level.

twistd would write every event, debug included; the tac hands it this observer instead (as the
application's ILogObserver), so ``[logging] level`` decides what reaches the log.
"""

from __future__ import annotations

import sys

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    textFileLogObserver,
)
from twisted.python.logfile import LogFile

from core.config import ConfigError, LoggingConfig

__all__ = ["log_observer"]


def log_observer(logging_config: LoggingConfig) -> ILogObserver:
    """Lines at ``logging_config.level`` and above to ``logging_config.file``."""
    path = logging_config.file
    try:
        out = sys.stdout if path in ("", "-") else LogFile.fromFullPath(path)
    except OSError as exc:
        raise ConfigError(f"logging.file: cannot write {path}: {exc.strerror}") from None
    level = LogLevel.levelWithName(logging_config.level)
    return FilteringLogObserver(textFileLogObserver(out),
                                [LogLevelFilterPredicate(defaultLogLevel=level)])
