"""The log observer the tac gives twistd: the configured level decides what is written."""

from __future__ import annotations

import pytest
from twisted.logger import Logger, LogLevel

from core.config import ConfigError, LoggingConfig
from ops.logs import log_observer


def lines_logged(tmp_path, level: str) -> list[str]:
    path = tmp_path / "loyalty.log"
    observer = log_observer(LoggingConfig(level=level, file=str(path)))
    log = Logger(namespace="sms", observer=observer)
    log.debug("MO from {src}", src="138****5678")
    log.info("bound to SMSC {smsc}", smsc="sim")
    log.error("could not store an MO message")
    return path.read_text().splitlines()


def test_info_level_leaves_out_the_per_message_debug_lines(tmp_path):
    lines = lines_logged(tmp_path, "info")
    assert [line.split("] ", 1)[1] for line in lines] == [
        "bound to SMSC sim", "could not store an MO message"]


@pytest.mark.parametrize("level, count", [("debug", 3), ("warn", 1), ("error", 1)])
def test_each_level_writes_that_level_and_above(tmp_path, level, count):
    assert len(lines_logged(tmp_path, level)) == count


def test_an_unwritable_log_file_is_a_config_error_at_start(tmp_path):
    with pytest.raises(ConfigError, match="logging.file"):
        log_observer(LoggingConfig(file=str(tmp_path / "missing" / "dir" / "loyalty.log")))


def test_a_named_process_says_its_name_on_every_line(tmp_path):
    """Several processes on one database: [process] name tells their lines apart."""
    path = tmp_path / "loyalty.log"
    observer = log_observer(LoggingConfig(file=str(path)), "loyalty-2")
    Logger(namespace="sms", observer=observer).info("bound to SMSC {smsc}", smsc="sim")
    observer({"log_format": "accepted", "log_system": "FastAGIProtocol,3,127.0.0.1",
              "log_time": 0.0, "log_level": LogLevel.info,
              "log_namespace": "twisted"})
    lines = path.read_text().splitlines()
    assert "[loyalty-2 sms#info] bound to SMSC sim" in lines[0]
    assert lines[1].endswith("[loyalty-2 FastAGIProtocol,3,127.0.0.1] accepted")


def test_an_unnamed_process_writes_twisteds_usual_lines(tmp_path):
    path = tmp_path / "loyalty.log"
    Logger(namespace="sms", observer=log_observer(LoggingConfig(file=str(path)))).info("hi")
    assert path.read_text().rstrip().endswith(" [sms#info] hi")
