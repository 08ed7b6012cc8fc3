"""What an operator sees when the ``loyalty`` command cannot do what was asked: one line saying
what is wrong and what to do, a non-zero exit status, never a traceback (the real command, in
its own process)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALLED = Path(sys.executable).parent / "loyalty"
COMMAND = [str(INSTALLED)] if INSTALLED.exists() else [sys.executable, "-m", "core.cli"]


def loyalty(*args: str, database_url: str | None = None, **env: str):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
    if database_url:
        environ["LOYALTY_DATABASE_URL"] = database_url
    environ.update(env)
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, cwd=ROOT,
                          env=environ, timeout=60)


def one_line(result) -> str:
    """The single line the command wrote to stderr (asserting it is one, with no traceback)."""
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- missing members and orders -------------------------------------------------------------


def test_an_unknown_member_is_named_masked_with_what_to_do(database_url):
    result = loyalty("member", "show", "13600136000", database_url=database_url)
    assert result.returncode == 1
    line = one_line(result)
    assert line.startswith("no member 136****6000: ")
    assert "loyalty import members" in line
    assert "13600136000" not in result.stderr + result.stdout


def test_an_unknown_order_says_where_to_find_order_numbers(database_url):
    result = loyalty("order", "cancel", "NOPE123", database_url=database_url)
    assert result.returncode == 1
    assert one_line(result) == ("no order NOPE123: check the order number "
                                "(`loyalty member show MSISDN` lists a member's orders)")


# --- the database ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", [("member", "show", "13800138000"), ("db", "upgrade"),
                                     ("jobs", "list"), ("check", "ledger")])
def test_a_postgresql_server_that_is_down(command):
    url = f"postgresql+psycopg://loyalty:s3cret@127.0.0.1:{closed_port()}/loyalty"
    result = loyalty(*command, database_url=url)
    assert result.returncode == 2
    line = one_line(result)
    assert line.startswith(f"cannot open the database postgresql+psycopg://loyalty:***@"
                           f"127.0.0.1:{url.rsplit(':', 1)[1].split('/')[0]}/loyalty: ")
    assert "Connection refused" in line and "database server is running" in line
    assert "s3cret" not in result.stderr


def test_a_sqlite_path_that_cannot_be_a_database(tmp_path):
    (tmp_path / "a-file").write_text("")
    result = loyalty("db", "upgrade", database_url=f"sqlite:///{tmp_path}/a-file/db.sqlite3")
    assert result.returncode == 2
    assert "cannot make its directory" in one_line(result)
    result = loyalty("member", "show", "13800138000", database_url=f"sqlite:///{tmp_path}")
    assert result.returncode == 2
    assert "unable to open database file" in one_line(result)


def test_a_config_file_that_is_a_directory(tmp_path):
    result = loyalty("--config", str(tmp_path), "jobs", "list")
    assert result.returncode == 2
    assert one_line(result) == f"configuration error: config file {tmp_path}: is a directory"


# --- paths given to subcommands -------------------------------------------------------------


def test_prompts_install_into_a_file(tmp_path, database_url):
    target = tmp_path / "sounds"
    target.write_text("not a directory")
    result = loyalty("prompts", "install", str(target), database_url=database_url)
    assert result.returncode == 1
    assert one_line(result) == f"SOUNDS_DIR {target}: not a directory"


def test_prompts_with_a_root_that_is_not_there(tmp_path, database_url):
    for command in ("check", "install"):
        args = ["prompts", command, "--root", str(tmp_path / "missing")]
        if command == "install":
            args.insert(2, str(tmp_path / "sounds"))
        result = loyalty(*args, database_url=database_url)
        assert result.returncode == 1
        assert one_line(result) == f"--root {tmp_path / 'missing'}: no such directory"
    assert not (tmp_path / "sounds").exists()


def test_prompts_load_from_a_file(tmp_path, database_url):
    source = tmp_path / "recording.wav"
    source.write_bytes(b"RIFF")
    result = loyalty("prompts", "load", str(source), "--lang", "zh", database_url=database_url)
    assert result.returncode == 1
    assert one_line(result) == f"recordings directory {source}: not a directory"


def test_simulate_sms_on_a_port_in_use(database_url):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = loyalty("simulate", "sms", "13800138000", "JF", "--port", str(port),
                         database_url=database_url)
    assert result.returncode == 1
    assert one_line(result) == (f"the SMSC simulator cannot listen on 127.0.0.1:{port}: "
                                "address already in use; give another --port, or leave it out "
                                "for a free one")


# --- jobs run --as-of -----------------------------------------------------------------------


@pytest.mark.parametrize("given, said", [
    ("2026-13-01", "'2026-13-01' is not a date: give it as YYYY-MM-DD, e.g. 2026-12-01"),
    ("0001-01-01", "0001-01-01: give a date between 1970 and 8999"),
])
def test_jobs_run_with_a_bad_as_of_date(database_url, given, said):
    assert loyalty("demo", database_url=database_url).returncode == 0  # dates to compute with
    result = loyalty("jobs", "run", "tier-review", "--as-of", given, database_url=database_url)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == \
        f"loyalty jobs run: error: argument --as-of: {said}"
