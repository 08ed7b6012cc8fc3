"""Starting the server (``twistd -n -y twistd.tac`` in its own process) when something the
operator controls is wrong: it exits at once with one line naming what to change, instead of a
traceback or a half-started process. And twistd's own ``-l FILE`` is where the log goes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ops.startup import log_file

ROOT = Path(__file__).resolve().parent.parent
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


@pytest.fixture
def env(database_url):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
    environ.update(LOYALTY_DATABASE_URL=database_url, LOYALTY_FASTAGI_PORT="0",
                   LOYALTY_OPS_PORT="0", LOYALTY_SMPP_ENABLED="false",
                   LOYALTY_JOBS_ENABLED="false")
    return environ


@pytest.fixture
def taken_port():
    """A port something else listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def start(env, *twistd_args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
    """Run the server and expect it to exit by itself within ``timeout``."""
    return subprocess.run([*TWISTD, "-n", "--pidfile=", *twistd_args, "-y", "twistd.tac"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def refusal(result) -> str:
    """The server's one line about why it did not start (no traceback anywhere)."""
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if "cannot start" in line]
    assert len(lines) == 1, output
    return lines[0].split("loyalty: cannot start: ", 1)[1]


@pytest.mark.parametrize("section", ["fastagi", "ops"])
def test_a_port_in_use_names_the_config_key_and_exits(env, taken_port, section):
    env[f"LOYALTY_{section.upper()}_PORT"] = str(taken_port)
    said = refusal(start(env))
    assert said.startswith(f"{section}.port {taken_port} is already in use (on 127.0.0.1): ")
    assert said.endswith(f"set another {section}.port")


def test_a_database_server_that_is_down(env):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env["LOYALTY_DATABASE_URL"] = f"postgresql+psycopg://loyalty:s3cret@127.0.0.1:{port}/x"
    result = start(env)
    said = refusal(result)
    assert said.startswith(f"cannot open the database postgresql+psycopg://loyalty:***@"
                           f"127.0.0.1:{port}/x: ")
    assert "s3cret" not in result.stdout + result.stderr


def test_twistd_logfile_option_is_where_the_log_goes(env, tmp_path):
    log = tmp_path / "server.log"
    proc = subprocess.Popen([*TWISTD, "-n", "--pidfile=", "-l", str(log), "-y", "twistd.tac"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            if log.exists() and "FastAGI listening on" in log.read_text():
                break
            time.sleep(0.1)
        assert log.exists() and "FastAGI listening on" in log.read_text()
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "FastAGI listening on" not in out



@pytest.mark.parametrize("configured, options, used", [
    ("-", {"nodaemon": True, "logfile": None}, "-"),
    ("-", {"nodaemon": True, "logfile": "var/x.log"}, "var/x.log"),
    ("/var/log/loyalty.log", {"nodaemon": True, "logfile": "var/x.log"}, "var/x.log"),
    ("-", {"nodaemon": False, "logfile": None}, "twistd.log"),
    ("/var/log/loyalty.log", {"nodaemon": False, "logfile": None}, "/var/log/loyalty.log"),
    ("-", {}, "-"),  # not under twistd (tests build the server themselves)
])
def test_where_the_log_goes(configured, options, used):
    assert log_file(configured, options) == used
