"""The call simulator: res_agi behaviour, scripted keys, transcripts, and our server end to end."""

from __future__ import annotations

import os

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock, StringTransport

from harness.simulator import SimulatorProtocol, build_header, run_many, simulate_call
from harness.simulator_engine import KeySource, SimulatedChannel, parse_agi_args
from harness.simulator_interactive import InteractiveKeys, run_interactive
from ivr.agi import AGIChannel, AGICommandError, ChannelHungUp
from tests.ivr.conftest import sleep


def engine(keys: str = "", prompts: dict[str, str] | None = None) -> SimulatedChannel:
    def prompt_text(name: str, language: str) -> str | None:
        return None if prompts is None else prompts.get(name)

    return SimulatedChannel(
        name="SIP/sim-00000001",
        language="zh",
        callerid="13812345678",
        uniqueid="1700000000.1",
        keys=KeySource(keys),
        prompt_text=prompt_text if prompts is not None else None,
    )


def run(coro):
    """Drive an engine coroutine that never waits (scripted keys)."""
    d = defer.Deferred.fromCoroutine(coro)
    results = []
    d.addBoth(results.append)
    assert results, "engine coroutine did not finish synchronously"
    if isinstance(results[0], Exception) or hasattr(results[0], "raiseException"):
        results[0].raiseException()
    return results[0]


# -- res_agi emulation, no network ------------------------------------------------------------


def test_parse_args_like_res_agi():
    assert parse_agi_args('STREAM FILE "main menu" ""') == ["STREAM", "FILE", "main menu", ""]
    assert parse_agi_args(r'SET VARIABLE "a\"b" "c\\d"') == ["SET", "VARIABLE", 'a"b', "c\\d"]
    assert parse_agi_args("SAY  DIGITS\t123 #") == ["SAY", "DIGITS", "123", "#"]
    assert parse_agi_args('VERBOSE ab"c d"e') == ["VERBOSE", "abc de"]
    assert parse_agi_args(r"VERBOSE a\ b") == ["VERBOSE", "a b"]


def test_unknown_usage_and_dead_channel_replies():
    ch = engine()
    assert run(ch.execute("FROB NICATE")).lines == ["510 Invalid or unknown command"]
    assert run(ch.execute("GET")).lines == ["510 Invalid or unknown command"]
    usage = run(ch.execute('STREAM FILE "x"')).lines
    assert usage[0] == "520-Invalid command syntax.  Proper usage follows:"
    assert usage[-1] == "520 End of proper usage."
    assert len(usage) >= 3
    assert run(ch.execute('SAY NUMBER "abc" ""')).lines[0].startswith("520-")

    ch.hang_up("caller")
    dead = "511 Command Not Permitted on a dead channel or intercept routine"
    assert run(ch.execute('STREAM FILE "x" ""')).lines == [dead]
    assert run(ch.execute("ANSWER")).lines == [dead]
    assert run(ch.execute('SET VARIABLE "A" "b"')).lines == ["200 result=1"]
    assert run(ch.execute('GET VARIABLE "A"')).lines == ["200 result=1 (b)"]
    assert run(ch.execute('GET VARIABLE "B"')).lines == ["200 result=0"]
    assert run(ch.execute('VERBOSE "still here" 1')).lines == ["200 result=1"]
    assert run(ch.execute("FROB")).lines == ["510 Invalid or unknown command"]


def test_prompts_barge_in_and_missing_files():
    ch = engine("5", prompts={"menu": "欢迎"})
    assert run(ch.execute('STREAM FILE "menu" "12"')).lines == ["200 result=0 endpos=4000"]
    assert run(ch.execute('STREAM FILE "gone" "12"')).lines == ["200 result=-1 endpos=0"]
    assert run(ch.execute('GET DATA "gone" 3000 4')).lines == ["200 result=-1"]
    assert run(ch.execute('STREAM FILE "menu" "56"')).lines == ["200 result=53 endpos=2000"]
    assert not ch.dead
    assert ch.transcript.render() == "\n".join(
        [
            "heard: menu  «欢迎»",
            "missing prompt: gone (language zh)",
            "missing prompt: gone (language zh)",
            "heard: menu  «欢迎» (interrupted)",
            "pressed: 5",
        ]
    )


@pytest.mark.parametrize(
    ("keys", "max_digits", "reply", "left"),
    [
        ("123#", 10, "200 result=123", ""),
        ("12T9", 10, "200 result=12 (timeout)", "9"),
        ("#", 10, "200 result=", ""),
        ("*5#", 10, "200 result=*5", ""),
        ("", 10, "200 result= (timeout)", ""),
        ("12345", 3, "200 result=123", "45"),
        ("1H", 3, "200 result=-1", ""),
    ],
)
def test_get_data(keys, max_digits, reply, left):
    ch = engine(keys)
    step = run(ch.execute(f'GET DATA "enter_pin" "3000" "{max_digits}"'))
    assert step.lines == [reply]
    assert ch.keys.remaining == left
    assert (step.hangup == "caller") == ("H" in keys)


def test_wait_for_digit_say_and_hangup_commands():
    ch = engine("#T2H")
    assert run(ch.execute('WAIT FOR DIGIT "5000"')).lines == ["200 result=35"]
    assert run(ch.execute('WAIT FOR DIGIT "5000"')).lines == ["200 result=0"]
    assert run(ch.execute('SAY NUMBER "1200" "2"')).lines == ["200 result=50"]
    step = run(ch.execute('SAY DIGITS "95105" ""'))
    assert step.lines == ["200 result=-1"] and step.hangup == "caller"
    assert ch.dead and ch.hung_up_by == "caller"

    ch = engine()
    step = run(ch.execute("HANGUP"))
    assert step.lines == ["200 result=1"] and step.hangup == "server"
    assert ch.hung_up_by == "server"


def test_header_and_long_commands_like_asterisk():
    clock = MemoryReactorClock()
    ch = engine()
    header = build_header(
        "127.0.0.1",
        4573,
        "loyalty",
        channel=ch.name,
        language="zh",
        uniqueid=ch.uniqueid,
        callerid=None,
        args=["x y"],
    )
    proto = SimulatorProtocol(ch, header, clock=clock, timeout_s=5)
    transport = StringTransport()
    proto.makeConnection(transport)
    sent = transport.value().decode()
    assert sent.startswith(
        "agi_network: yes\nagi_network_script: loyalty\n"
        "agi_request: agi://127.0.0.1:4573/loyalty\nagi_channel: SIP/sim-00000001\n"
    )
    assert "agi_callerid: unknown\n" in sent and "agi_accountcode: \n" in sent
    assert sent.endswith("agi_arg_1: x y\n\n")

    transport.clear()
    # res_agi reads 2047 bytes per command: a 2047-byte line is a command plus an empty one.
    proto.lineReceived(b"NOOP " + b"x" * 2042)
    assert transport.value() == b"200 result=0\n510 Invalid or unknown command\n"
    clock.advance(6)  # timeout_s: the simulated caller hangs up and leaves
    assert transport.value().endswith(b"HANGUP\n") and proto.timed_out


# -- end to end with our server ---------------------------------------------------------------


async def menu_flow(ch: AGIChannel) -> None:
    """A small test flow: balance (1) or expiry date (2), PIN entry, goodbye."""
    await ch.answer()
    for _ in range(2):
        key = await ch.stream_file("main_menu", "12")
        if key is None:
            key = await ch.wait_for_digit(5000)
        if key == "1":
            await ch.stream_file("your_balance_is")
            await ch.say_number(1200)
            break
        if key == "2":
            pin = await ch.get_data("enter_pin", 5000, 4)
            if pin.timed_out or len(pin.digits) != 4:
                await ch.stream_file("invalid_pin")
                continue
            await ch.say_datetime(1798732799, "", fmt="YmdHM", tz="Asia/Shanghai")
            break
    await ch.set_variable("LOYALTY_NEXT", "end")
    await ch.stream_file("goodbye")
    await ch.hangup()


@pytest_twisted.ensureDeferred
async def test_two_simulator_processes_never_share_a_call_id(agi_server):
    # Asterisk's ids are <epoch>.<n>; two simulators started in the same second would both
    # count n from 0. Like Asterisk's ``systemname``, the process id tells them apart.
    _, port = agi_server({"loyalty": menu_flow})
    result = await simulate_call("127.0.0.1", port, callerid="13812345678", keys="1")
    assert result.uniqueid.startswith(f"sim{os.getpid()}-")


@pytest_twisted.ensureDeferred
async def test_scripted_call_transcript(agi_server):
    _, port = agi_server({"loyalty": menu_flow})
    result = await simulate_call("127.0.0.1", port, callerid="13812345678", keys="1")
    assert result.transcript.lines() == [
        "answered",
        "heard: main_menu (interrupted)",
        "pressed: 1",
        "heard: your_balance_is",
        "heard number: 1200",
        "set LOYALTY_NEXT=end",
        "heard: goodbye",
        "server hung up",
    ]
    assert result.hung_up_by == "server"
    assert result.variables_set == {"LOYALTY_NEXT": "end"}
    assert result.commands == [
        "ANSWER",
        'STREAM FILE "main_menu" "12"',
        'STREAM FILE "your_balance_is" ""',
        'SAY NUMBER "1200" ""',
        'SET VARIABLE "LOYALTY_NEXT" "end"',
        'STREAM FILE "goodbye" ""',
        "HANGUP",
    ]


@pytest_twisted.ensureDeferred
async def test_pin_timeout_then_retry(agi_server):
    _, port = agi_server({"loyalty": menu_flow})
    result = await simulate_call("127.0.0.1", port, callerid="13812345678", keys="212T2 1234")
    lines = result.transcript.lines()
    assert lines[1:6] == [
        "heard: main_menu (interrupted)",
        "pressed: 2",
        "heard: enter_pin (interrupted)",
        "pressed: 12",
        "no input (timeout)",
    ]
    assert "heard: invalid_pin" in lines
    assert "heard date/time: 2026-12-31 23:59:59 Asia/Shanghai format='YmdHM'" in lines


@pytest_twisted.ensureDeferred
async def test_silent_caller_and_missing_prompts_do_not_end_the_call(agi_server):
    seen = {}

    async def flow(ch: AGIChannel) -> None:
        seen["first"] = await ch.stream_file("no_such_prompt", "1")
        seen["failed"] = ch.last_failed
        seen["hung_up"] = ch.hung_up
        seen["data"] = await ch.get_data("no_such_prompt", 1000, 3)
        seen["digit"] = await ch.wait_for_digit(1000)
        await ch.stream_file("goodbye")

    _, port = agi_server({"loyalty": flow})
    known = {"goodbye": "再见"}
    result = await simulate_call(
        "127.0.0.1", port, callerid="13812345678", prompt_text=lambda n, lang: known.get(n)
    )
    assert seen["first"] is None and seen["failed"] and not seen["hung_up"]
    assert seen["data"].failed and seen["digit"] is None
    assert result.transcript.kinds() == [
        "missing-prompt",
        "missing-prompt",
        "timeout",
        "prompt",
        "closed",
    ]
    assert result.hung_up_by == "server"


@pytest_twisted.ensureDeferred
async def test_caller_hangs_up_mid_prompt_then_511(agi_server):
    seen = {}

    async def flow(ch: AGIChannel) -> None:
        await ch.answer()
        seen["key"] = await ch.stream_file("main_menu", "12")
        try:
            await ch.say_number(5)
        except ChannelHungUp as e:
            seen["reason"] = e.reason
        await ch.set_variable("LOYALTY_RESULT", "caller-left")

    _, port = agi_server({"loyalty": flow})
    result = await simulate_call("127.0.0.1", port, callerid="1", keys="H")
    assert seen["key"] is None and seen["reason"] in ("hangup", "dead-channel")
    assert result.hung_up_by == "caller"
    assert result.variables_set == {"LOYALTY_RESULT": "caller-left"}


@pytest_twisted.ensureDeferred
async def test_hangup_at_command_and_when_idle(agi_server):
    seen = []

    async def flow(ch: AGIChannel) -> None:
        await ch.answer()
        await sleep(0.3)
        try:
            await ch.stream_file("main_menu")
        except ChannelHungUp as e:
            seen.append(e.reason)

    _, port = agi_server({"loyalty": flow})
    result = await simulate_call("127.0.0.1", port, callerid="1", hangup_at_command=1)
    assert result.commands == ["ANSWER"] and result.hung_up_by == "caller"
    result = await simulate_call("127.0.0.1", port, callerid="1", hangup_when_idle_after=0.1)
    assert result.commands == ["ANSWER"] and result.hung_up_by == "caller"
    assert result.transcript.lines()[-1] == "caller hung up (while the server was idle)"
    assert seen == ["hangup", "hangup"]


@pytest_twisted.ensureDeferred
async def test_errors_quoting_and_header_fields_end_to_end(agi_server):
    seen = {}
    odd = 'quote " backslash \\ tab \t 中文 $%'

    async def flow(ch: AGIChannel) -> None:
        seen.update(script=ch.script, query=ch.query, args=ch.args, lang=ch.language)
        seen["callerid"] = ch.callerid
        await ch.set_variable("ODD", odd)
        seen["odd"] = await ch.get_variable("ODD")
        await ch.say_alpha("ABC中文")
        try:
            await ch.command("FROB")
        except AGICommandError as e:
            seen["510"] = e.code
        try:
            await ch.command("GET DATA")
        except AGICommandError as e:
            seen["520"] = e.text.splitlines()
        seen["exec"] = await ch.exec_("Dial", "SIP/agent,30")

    _, port = agi_server({"loyalty": flow})
    result = await simulate_call(
        "127.0.0.1",
        port,
        script="loyalty?lang=en",
        callerid=None,
        language="en",
        args=("a b", ""),
    )
    assert seen["script"] == "loyalty" and seen["query"] == {"lang": "en"}
    assert seen["args"] == ["a b", ""] and seen["lang"] == "en" and seen["callerid"] is None
    assert seen["odd"] == odd and result.variables_set == {"ODD": odd}
    assert seen["510"] == 510
    assert seen["520"][0] == "Invalid command syntax.  Proper usage follows:"
    assert seen["520"][-1] == "520 End of proper usage."
    assert seen["exec"] == 0
    assert "heard letters: ABC中文" in result.transcript.lines()
    assert "exec: Dial(SIP/agent,30)" in result.transcript.lines()


@pytest_twisted.ensureDeferred
async def test_run_many(agi_server):
    async def flow(ch: AGIChannel) -> None:
        key = await ch.wait_for_digit(1000)
        await ch.set_variable("KEY", key or "none")

    factory, port = agi_server({"loyalty": flow})
    results = await run_many(
        "127.0.0.1",
        port,
        20,
        lambda i: {"callerid": f"1380000{i:04d}", "keys": str(i % 10)},
        concurrency=8,
    )
    assert [r.variables_set["KEY"] for r in results] == [str(i % 10) for i in range(20)]
    assert factory.active_calls == 0


@pytest_twisted.ensureDeferred
async def test_interactive_mode(agi_server):
    _, port = agi_server({"loyalty": menu_flow})
    typed = iter(["", "2", "12345"])
    asked, shown = [], []

    async def read_line(ask: str) -> str | None:
        asked.append(ask)
        return next(typed, None)

    result = await run_interactive(
        "127.0.0.1", port, callerid="13812345678", read_line=read_line, write=shown.append
    )
    assert len(asked) == 3
    assert "pressed: 2" in shown and "pressed: 1234" in shown
    assert shown[-1] == "-- call over: hung up by server"
    assert result.variables_set == {"LOYALTY_NEXT": "end"}


def test_interactive_keys_queue():
    async def read_line(ask: str) -> str | None:
        return "12"

    keys = InteractiveKeys(read_line, lambda s: None)
    run(keys.ensure("digits"))
    assert keys.remaining == "12"
    keys.pop(), keys.pop()
    run(keys.ensure("more-digits"))  # the typed line ended without #: the caller waits
    assert keys.remaining == "T"


def test_record_file_like_res_agi(tmp_path):
    import wave

    ch = engine("#TH")
    ch.sounds_dir = tmp_path
    step = run(ch.execute('RECORD FILE "loyalty/tickets/n1" "wav" "#" "60000" "0" "BEEP" "s=5"'))
    assert step.lines == ["200 result=35 (dtmf) endpos=8000"]
    with wave.open(str(tmp_path / "loyalty/tickets/n1.wav")) as note:
        assert (note.getframerate(), note.getnchannels(), note.getnframes()) == (8000, 1, 8000)
    assert [e.kind for e in ch.transcript][:2] == ["beep", "record"]
    # Played back by the same name; a timeout records to the limit; a hang-up ends it.
    assert run(ch.execute('STREAM FILE "loyalty/tickets/n1" "#"')).lines == [
        "200 result=0 endpos=8000"]
    assert run(ch.execute(f'RECORD FILE "{tmp_path}/n2" "wav" "#" "3000"')).lines == [
        "200 result=0 (timeout) endpos=24000"]
    step = run(ch.execute('RECORD FILE "n3" "wav" "#" "3000"'))
    assert step.lines == ["200 result=-1 (hangup) endpos=8000"] and step.hangup == "caller"
    assert run(engine().execute('RECORD FILE "n4" "wav"')).lines[0].startswith("520-")
