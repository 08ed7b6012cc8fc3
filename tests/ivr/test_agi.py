"""FastAGI server: wire format, replies, hang-ups, timeouts, limits (real TCP on 127.0.0.1)."""

from __future__ import annotations

import pytest
import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.logger import globalLogPublisher

from harness.simulator import simulate_call
from harness.simulator_engine import parse_agi_args
from ivr.agi import (
    AGIChannel,
    AGICommandError,
    AGIProtocolError,
    AGIReply,
    ChannelHungUp,
    build_command,
    quote_arg,
)
from ivr.agi_wire import HANGUP_EVENT, ReplyAssembler, normalize_script, parse_header_line
from tests.ivr.conftest import HEADER, Recorder, connect_raw, sleep

# -- pure wire functions --------------------------------------------------------------------------


def test_header_lines_split_on_first_colon_and_keep_empty_and_unknown():
    assert parse_header_line("agi_request: agi://127.0.0.1:4573/loyalty?x=1") == (
        "request",
        "agi://127.0.0.1:4573/loyalty?x=1",
    )
    assert parse_header_line("agi_accountcode: ") == ("accountcode", "")
    assert parse_header_line("agi_accountcode:") == ("accountcode", "")
    assert parse_header_line("agi_rdnis: unknown") == ("rdnis", "unknown")
    assert parse_header_line("agi_arg_1:  two spaces") == ("arg_1", " two spaces")
    assert parse_header_line("no colon here") is None


def test_script_names_are_normalised():
    assert normalize_script("loyalty") == ("loyalty", "")
    assert normalize_script("/loyalty/?lang=en&x=") == ("loyalty", "lang=en&x=")
    assert normalize_script("?extension=100") == ("", "extension=100")


def test_every_reply_form():
    r = ReplyAssembler()
    reply = r.feed("200 result=49 endpos=12345")
    assert reply == AGIReply(200, 49, None, 12345, "200 result=49 endpos=12345", "49")
    reply = r.feed("200 result=1 (a (nested) value)")
    assert (reply.result, reply.data, reply.endpos) == (1, "a (nested) value", None)
    reply = r.feed("200 result=0 (timeout) endpos=800")
    assert (reply.result, reply.data, reply.endpos) == (0, "timeout", 800)
    reply = r.feed("200 result=0012 (timeout)")
    assert (reply.result, reply.result_text, reply.data) == (12, "0012", "timeout")
    reply = r.feed("200 result=")
    assert (reply.result, reply.result_text, reply.data) == (None, "", None)
    reply = r.feed("200 result=*1")
    assert (reply.result, reply.result_text) == (None, "*1")
    assert r.feed("HANGUP") is HANGUP_EVENT

    err = r.feed("510 Invalid or unknown command")
    assert isinstance(err, AGICommandError) and err.code == 510
    dead = r.feed("511 Command Not Permitted on a dead channel or intercept routine")
    assert isinstance(dead, ChannelHungUp) and dead.reason == "dead-channel"
    err = r.feed("520 Invalid command syntax.  Proper usage not available.")
    assert isinstance(err, AGICommandError) and err.code == 520

    # The usage text between the 520- and 520 lines is free text, even if it looks like a reply.
    assert r.feed("520-Invalid command syntax.  Proper usage follows:") is None
    assert r.in_block
    assert r.feed(" Usage: STREAM FILE <filename> <escape digits>") is None
    assert r.feed("200 result=1") is None
    assert r.feed("HANGUP") is None
    err = r.feed("520 End of proper usage.")
    assert isinstance(err, AGICommandError) and err.code == 520
    assert err.text.splitlines()[0] == "Invalid command syntax.  Proper usage follows:"
    assert err.text.splitlines()[-1] == "520 End of proper usage."
    assert not r.in_block

    with pytest.raises(AGIProtocolError):
        r.feed("hello there")


def test_quoting():
    assert quote_arg('say "hi" \\o/') == r'"say \"hi\" \\o/"'
    assert quote_arg("") == '""'
    assert quote_arg(42) == '"42"'
    assert build_command("STREAM FILE", "main_menu", "12") == 'STREAM FILE "main_menu" "12"'
    for bad in ("a\nb", "a\rb", "a\x00b"):
        with pytest.raises(ValueError):
            quote_arg(bad)
    with pytest.raises(TypeError):
        quote_arg(None)
    with pytest.raises(ValueError):  # over res_agi's 2047-byte command buffer
        build_command("VERBOSE", "x" * 2100)


_ARG_TEXT = st.text(
    st.characters(exclude_characters="\n\r\x00", exclude_categories=("Cs",)), max_size=40
)


@given(st.lists(_ARG_TEXT, max_size=5))
def test_quoted_arguments_survive_asterisks_parser(args):
    line = build_command("SET VARIABLE", *args)
    assert parse_agi_args(line) == ["SET", "VARIABLE", *args]


# -- raw byte exchange: the wire format pinned exactly ---------------------------------------------


@pytest_twisted.ensureDeferred
async def test_raw_exchange_pins_the_wire_format(agi_server):
    seen = {}

    async def flow(ch: AGIChannel) -> None:
        seen["env"] = dict(ch.env)
        seen["args"] = ch.args
        seen["callerid"] = ch.callerid
        await ch.answer()
        seen["digit"] = await ch.stream_file("main_menu", "12")
        seen["data"] = await ch.get_data("enter_pin", 5000, 6)
        seen["said"] = await ch.say_number(1200, "#")
        await ch.set_variable("ODD", 'a "q" \\ 中文')
        seen["var"] = await ch.get_variable("ODD")
        seen["none"] = await ch.get_variable("NOPE")
        await ch.say_datetime(1798732799, "", tz="Asia/Shanghai")

    factory, port = agi_server({"loyalty": flow})
    peer = await connect_raw(port)
    # A stray CR at a line end is tolerated.
    peer.send(HEADER.replace(b"agi_type: SIP\n", b"agi_type: SIP\r\n"))
    assert await peer.line() == b"ANSWER\n"
    peer.send(b"200 result=0\n")
    assert await peer.line() == b'STREAM FILE "main_menu" "12"\n'
    peer.send(b"200 result=49 endpos=12345\n")
    assert await peer.line() == b'GET DATA "enter_pin" "5000" "6"\n'
    peer.send(b"200 result=0012 (timeout)\n")
    assert await peer.line() == b'SAY NUMBER "1200" "#"\n'
    peer.send(b"200 result=35\n")
    assert await peer.line() == 'SET VARIABLE "ODD" "a \\"q\\" \\\\ 中文"\n'.encode()
    peer.send(b"200 result=1\n")
    assert await peer.line() == b'GET VARIABLE "ODD"\n'
    peer.send('200 result=1 (a "q" \\ 中文)\n'.encode())
    assert await peer.line() == b'GET VARIABLE "NOPE"\n'
    peer.send(b"200 result=0\n")
    line = await peer.line()
    assert line == b'SAY DATETIME "1798732799" "" "ABdY \'digits/at\' IMp" "Asia/Shanghai"\n'
    peer.send(b"200 result=0\n")
    await peer.wait_closed()

    assert seen["env"]["callerid"] == "13812345678"
    assert seen["env"]["accountcode"] == ""
    assert seen["env"]["rdnis"] == "unknown"
    assert seen["env"]["type"] == "SIP"
    assert seen["env"]["request"] == "agi://127.0.0.1:4573/loyalty"
    assert seen["args"] == ["a:b c"]
    assert seen["digit"] == "1"
    assert seen["data"].digits == "0012" and seen["data"].timed_out
    assert seen["said"] == "#"
    assert seen["var"] == 'a "q" \\ 中文'
    assert seen["none"] is None
    assert factory.active_calls == 0


@pytest_twisted.ensureDeferred
async def test_hangup_while_idle_stops_live_commands_without_sending_them(agi_server):
    release = defer.Deferred()
    outcome = {}

    async def flow(ch: AGIChannel) -> None:
        await ch.answer()
        await release
        outcome["hung_up"] = ch.hung_up
        try:
            await ch.stream_file("main_menu")
        except ChannelHungUp as e:
            outcome["raised"] = e.reason
        await ch.set_variable("LOYALTY_RESULT", "hungup")  # allowed on a dead channel
        await ch.hangup()  # a no-op now

    recorder = Recorder()
    _, port = agi_server({"loyalty": flow}, observer=recorder)
    peer = await connect_raw(port)
    peer.send(HEADER)
    assert await peer.line() == b"ANSWER\n"
    peer.send(b"200 result=0\n")
    peer.send(b"HANGUP\n")
    await sleep(0.05)
    release.callback(None)
    assert await peer.line() == b'SET VARIABLE "LOYALTY_RESULT" "hungup"\n'
    peer.send(b"200 result=1\n")
    await peer.wait_closed()
    assert outcome == {"hung_up": True, "raised": "hangup"}
    assert peer.received == b'ANSWER\nSET VARIABLE "LOYALTY_RESULT" "hungup"\n'
    assert recorder.ended[0][1] == "hangup"


@pytest_twisted.ensureDeferred
async def test_hangup_after_a_reply_is_an_event_not_the_next_reply(agi_server):
    seen = {}

    async def flow(ch: AGIChannel) -> None:
        seen["digit"] = await ch.stream_file("main_menu", "12")
        seen["failed"] = ch.last_failed
        # Sent before or after the HANGUP line is read: either way it is allowed dead, and its
        # reply must not be confused with the HANGUP line (the pyst2/starpy bug).
        await ch.verbose("after hangup")
        seen["verbose"] = ch.last_reply.raw
        seen["hung_up"] = ch.hung_up
        try:
            await ch.say_digits("123")
        except ChannelHungUp as e:
            seen["raised"] = e.reason

    _, port = agi_server({"loyalty": flow})
    peer = await connect_raw(port)
    peer.send(HEADER)
    assert await peer.line() == b'STREAM FILE "main_menu" "12"\n'
    # Caller hung up mid-prompt: the command gets its reply, then the HANGUP line.
    peer.send(b"200 result=-1 endpos=4000\nHANGUP\n")
    assert await peer.line() == b'VERBOSE "after hangup" "1"\n'
    peer.send(b"200 result=1\n")
    await peer.wait_closed()
    assert seen == {
        "digit": None,
        "failed": True,
        "verbose": "200 result=1",
        "hung_up": True,
        "raised": "hangup",
    }


@pytest_twisted.ensureDeferred
async def test_511_and_520_and_510_replies(agi_server):
    seen = {}

    async def flow(ch: AGIChannel) -> None:
        try:
            await ch.command("FROB")
        except AGICommandError as e:
            seen["510"] = (e.code, e.text)
        try:
            await ch.command('STREAM FILE "x"')
        except AGICommandError as e:
            seen["520"] = (e.code, e.text)
        try:
            await ch.stream_file("x")
        except ChannelHungUp as e:
            seen["511"] = e.reason
        seen["hung_up"] = ch.hung_up

    _, port = agi_server({"loyalty": flow})
    peer = await connect_raw(port)
    peer.send(HEADER)
    assert await peer.line() == b"FROB\n"
    peer.send(b"510 Invalid or unknown command\n")
    assert await peer.line() == b'STREAM FILE "x"\n'
    peer.send(b"520 Invalid command syntax.  Proper usage not available.\n")
    assert await peer.line() == b'STREAM FILE "x" ""\n'
    peer.send(b"511 Command Not Permitted on a dead channel\n")
    await peer.wait_closed()
    assert seen["510"] == (510, "Invalid or unknown command")
    assert seen["520"] == (520, "Invalid command syntax.  Proper usage not available.")
    assert seen["511"] == "dead-channel"
    assert seen["hung_up"] is True


# -- limits and failures -------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_idle_timeout_drops_a_silent_peer(agi_server):
    seen = {}

    async def flow(ch: AGIChannel) -> None:
        try:
            await ch.answer()
        except ChannelHungUp as e:
            seen["reason"] = e.reason
            raise

    recorder = Recorder()
    _, port = agi_server({"loyalty": flow}, idle_timeout_s=0.2, observer=recorder)
    peer = await connect_raw(port)
    peer.send(HEADER)
    assert await peer.line() == b"ANSWER\n"
    await peer.wait_closed()  # we never answer
    assert seen["reason"] == "timeout"
    assert await recorder.ended_d == "timeout"

    # Silent from the start (no header at all): dropped too.
    peer = await connect_raw(port)
    await peer.wait_closed()
    assert peer.received == b""


@pytest_twisted.ensureDeferred
async def test_over_long_line_drops_the_connection(agi_server):
    recorder = Recorder()

    async def flow(ch: AGIChannel) -> None:
        await ch.answer()

    _, port = agi_server({"loyalty": flow}, observer=recorder)
    peer = await connect_raw(port)
    peer.send(HEADER)
    assert await peer.line() == b"ANSWER\n"
    peer.send(b"200 result=0 (" + b"x" * 9000 + b")\n")
    await peer.wait_closed()
    assert await recorder.ended_d == "line-too-long"

    peer = await connect_raw(port)  # in the header too, even without a newline
    peer.send(b"agi_network: " + b"y" * 9000)
    await peer.wait_closed()
    assert peer.received == b""


@pytest_twisted.ensureDeferred
async def test_unknown_script_gets_a_verbose_and_is_closed(agi_server):
    called = []

    async def flow(ch: AGIChannel) -> None:
        called.append(ch)

    factory, port = agi_server({"loyalty": flow})
    result = await simulate_call("127.0.0.1", port, script="nope", callerid="13812345678")
    assert result.commands == ['VERBOSE "loyalty: no such FastAGI script \'nope\'" "1"']
    assert result.hung_up_by == "server"
    assert called == [] and factory.active_calls == 0


@pytest_twisted.ensureDeferred
async def test_max_calls_sends_the_extra_call_back_as_busy(agi_server):
    release = defer.Deferred()
    started = defer.Deferred()

    async def flow(ch: AGIChannel) -> None:
        started.callback(None)
        await release
        await ch.set_variable("LOYALTY_NEXT", "done")

    factory, port = agi_server({"loyalty": flow}, max_calls=1)
    first = defer.Deferred.fromCoroutine(simulate_call("127.0.0.1", port, callerid="13800000001"))
    await started
    assert factory.active_calls == 1
    busy = await simulate_call("127.0.0.1", port, callerid="13800000002")
    assert busy.commands == ['SET VARIABLE "LOYALTY_NEXT" "busy"']
    assert busy.variables_set == {"LOYALTY_NEXT": "busy"}
    assert busy.hung_up_by == "server"
    assert factory.rejected_calls == 1
    release.callback(None)
    result = await first
    assert result.variables_set == {"LOYALTY_NEXT": "done"}
    assert factory.active_calls == 0


@pytest_twisted.ensureDeferred
async def test_flow_errors_are_logged_once_and_hangups_quietly(agi_server):
    failures = []

    def observe(event):
        if event.get("log_failure") is not None and "FastAGI" in event.get("log_format", ""):
            failures.append(event)

    async def broken(ch: AGIChannel) -> None:
        await ch.answer()
        raise ValueError("boom")

    async def hung(ch: AGIChannel) -> None:
        await ch.answer()
        await ch.stream_file("main_menu")  # the caller hangs up here: -1, then HANGUP
        await ch.stream_file("again")  # raises at once, or is sent and gets 511

    recorder = Recorder()
    _, port = agi_server({"loyalty": broken, "hung": hung}, observer=recorder)
    globalLogPublisher.addObserver(observe)
    try:
        result = await simulate_call("127.0.0.1", port, callerid="13812345678")
        assert result.commands == ["ANSWER"] and result.hung_up_by == "server"
        await simulate_call("127.0.0.1", port, script="hung", callerid="1", keys="H")
    finally:
        globalLogPublisher.removeObserver(observe)
    assert len(failures) == 1
    assert failures[0]["log_failure"].check(ValueError)
    assert "13812345678" not in repr(failures[0])
    assert [outcome for _, outcome in recorder.ended] == ["error", "hangup"]


@pytest_twisted.ensureDeferred
async def test_think_time_is_reported(agi_server):
    from twisted.internet import reactor

    recorder = Recorder()

    async def flow(ch: AGIChannel) -> None:
        await ch.answer()
        await sleep(0.1)
        await ch.verbose("thought about it")

    _, port = agi_server({"loyalty": flow}, observer=recorder, clock=reactor)
    await simulate_call("127.0.0.1", port, callerid="13812345678")
    assert len(recorder.think) == 2
    assert 0 <= recorder.think[0] < 0.1
    assert recorder.think[1] >= 0.09
    assert len(recorder.started) == 1 and recorder.ended[0][1] == "completed"


@pytest_twisted.ensureDeferred
async def test_only_one_command_at_a_time(agi_server):
    seen = {}

    async def flow(ch: AGIChannel) -> None:
        first = defer.Deferred.fromCoroutine(ch.answer())
        try:
            await ch.verbose("second")
        except AGIProtocolError:
            seen["refused"] = True
        await first

    _, port = agi_server({"loyalty": flow})
    result = await simulate_call("127.0.0.1", port, callerid="1")
    assert seen == {"refused": True} and result.commands == ["ANSWER"]
