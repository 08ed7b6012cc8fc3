"""FastAGI fuzzing: generated header blocks and reply streams against FastAGIProtocol, checked
against an independent model of the FastAGI wire rules (docs/architecture.md), plus
argument quoting round trips.

The model (``expect``) says, for any byte stream, which commands the server sends and how the
call ends: over-long line -> dropped (``line-too-long``); a line that is no reply ->
dropped (``protocol-error``); a reply the flow cannot use (5xx, 520 block, non-DTMF GET DATA)
-> the flow gets an AGI error and ends the call cleanly; HANGUP -> the flow's next live command
raises ChannelHungUp; 511 -> ChannelHungUp; an unknown script -> one VERBOSE, then closed.
Nothing may escape the protocol and nothing may be logged as a failure (see conftest)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest
import pytest_twisted
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from twisted.internet import defer, endpoints, reactor, task
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import connectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from harness.simulator import simulate_call
from harness.simulator_commands import parse_agi_args
from ivr.agi import (
    AGIChannel,
    AGICommandError,
    AGIError,
    AGIProtocolError,
    ChannelHungUp,
    FastAGIFactory,
    build_command,
    quote_arg,
)
from ivr.agi_wire import MAX_COMMAND_BYTES, MAX_LINE_BYTES, normalize_script
from tests.faults.conftest import Observer, examples, sleep
from tests.ivr.conftest import RawPeer

DTMF = set("0123456789*#ABCD")
STREAM = build_command("STREAM FILE", "main_menu", "12")
GET_DATA = build_command("GET DATA", "enter_pin", 3000, 6)
CYCLE = ("ANSWER", GET_DATA, STREAM)  # what the fuzz flow sends, in a loop


class FuzzFlow:
    """Loops ANSWER / GET DATA / STREAM FILE (sent raw, reply unparsed) until something ends
    the call. ChannelHungUp is re-raised (the call's outcome); AGI errors end it quietly."""

    def __init__(self) -> None:
        self.calls = 0
        self.error: AGIError | None = None

    async def __call__(self, ch: AGIChannel) -> None:
        self.calls += 1
        # Header-derived attributes must never raise (``args`` aside: see the xfail below).
        _ = (ch.env, ch.uniqueid, ch.language, ch.callerid, ch.query, ch.hung_up)
        try:
            i = 0
            while True:
                command = CYCLE[i % 3]
                if command == "ANSWER":
                    await ch.answer()
                elif command == GET_DATA:
                    await ch.get_data("enter_pin", 3000, 6)
                else:
                    await ch.command(STREAM)
                i += 1
        except ChannelHungUp as e:
            self.error = e
            raise
        except (AGICommandError, AGIProtocolError) as e:
            self.error = e


# -- the model --------------------------------------------------------------------------------

_CODE = re.compile(r"^(\d{3})([ -]|$)")
_TOKEN = re.compile(r"^200 result=(\S*)")


def _text(raw: bytes) -> str:
    line = raw.decode("utf-8", errors="replace")
    return line[:-1] if line.endswith("\r") else line


@dataclass
class Expected:
    started: bool = False  # the header ended
    script: str | None = None
    commands: list[str] = field(default_factory=list)
    end: str | None = None  # hangup reason, "agi-error", or None (still waiting)
    aborted: bool = False  # dropped by us (line-too-long / protocol-error)
    hangup_seen: bool = False

    @property
    def outcome(self) -> str:
        if self.end == "agi-error":
            return "hangup" if self.hangup_seen else "completed"
        return "hangup" if self.end in ("hangup", "dead-channel") else self.end or "?"


def expect(lines: list[bytes], partial: bytes) -> Expected:
    """What must happen when ``lines`` (each ended by \\n) then ``partial`` arrive."""
    exp = Expected()
    env: dict[str, str] = {}
    header_lines = 0
    feed = [(raw, True) for raw in lines] + [(partial, False)]
    i = 0
    # Header: split on the first colon, agi_ prefix dropped, one space after the colon dropped;
    # blank lines before the first field are tolerated but counted; more than 256 lines is an
    # abuse.
    for i, (raw, complete) in enumerate(feed):  # noqa: B007
        if len(raw) > MAX_LINE_BYTES:
            exp.end, exp.aborted = "line-too-long", True
            return exp
        if not complete:
            return exp
        line = _text(raw)
        if line == "" and env:
            break
        header_lines += 1
        if header_lines > 256:
            exp.end, exp.aborted = "protocol-error", True
            return exp
        key, sep, value = line.partition(":")
        if sep and key.strip():
            key = key.strip()
            key = key[4:] if key.startswith("agi_") else key
            env[key] = value[1:] if value.startswith(" ") else value
    else:
        return exp
    exp.started = True
    exp.script = normalize_script(env.get("network_script", ""))[0]
    if exp.script != "loyalty":
        return exp  # one VERBOSE, then closed (checked by the test)

    k = 0
    exp.commands.append(CYCLE[0])
    block, block_bytes = False, 0
    for raw, complete in feed[i + 1:]:
        if len(raw) > MAX_LINE_BYTES:
            exp.end, exp.aborted = "line-too-long", True
            return exp
        if not complete:
            break
        line = _text(raw)
        if block:
            block_bytes += len(line) + 1
            if block_bytes > 64 * 1024:  # a usage block that never ends
                exp.end, exp.aborted = "protocol-error", True
                return exp
            if line.startswith("520 "):
                exp.end = "agi-error"
                return exp
            continue
        if line == "HANGUP":
            exp.hangup_seen = True
            continue
        m = _CODE.match(line)
        if m is None:
            exp.end, exp.aborted = "protocol-error", True
            return exp
        code = int(m.group(1))
        if code == 200:
            token = _TOKEN.match(line)
            if token is None:
                exp.end, exp.aborted = "protocol-error", True
                return exp
            text = token.group(1)
            if CYCLE[k % 3] == GET_DATA and text != "-1" and set(text) - DTMF:
                exp.end = "agi-error"  # GET DATA returned something that is not DTMF
                return exp
            k += 1
            if exp.hangup_seen:  # every command of the loop needs a live channel
                exp.end = "hangup"
                return exp
            exp.commands.append(CYCLE[k % 3])
        elif code == 520 and m.group(2) == "-":
            block, block_bytes = True, len(line)
        elif code == 100:
            continue  # provisional: the final reply follows
        elif code == 511:
            exp.end = "dead-channel"
            return exp
        else:
            exp.end = "agi-error"
            return exp
    exp.end = "connection-lost"  # the test closes the connection after the last byte
    return exp


# -- generators -------------------------------------------------------------------------------

_no_nl = st.characters(exclude_characters="\n", exclude_categories=("Cs",))
_any_no_nl = st.characters(exclude_characters="\n")  # lone surrogates included
_KEYS = ["agi_network", "agi_request", "agi_channel", "agi_language",
         "agi_type", "agi_uniqueid", "agi_version", "agi_callerid", "agi_calleridname",
         "agi_dnid", "agi_rdnis", "agi_context", "agi_extension", "agi_priority",
         "agi_enhanced", "agi_accountcode", "agi_threadid", "agi_arg_1", "agi_arg_2"]
_value = st.one_of(
    st.sampled_from(["", "unknown", " ", "a:b:c", "agi://h:4573/x?y=1", "x\r", "\r", "中文"]),
    st.text(_no_nl, max_size=30),
)
_header_line = st.one_of(
    st.builds(lambda k, v: f"{k}: {v}".encode(), st.sampled_from(_KEYS), _value),
    st.builds(lambda k, v: f"{k}:{v}".encode(), st.text(_no_nl, max_size=15), _value),
    st.builds(lambda k, v: f"agi_{k}: {v}".encode(), st.text(_no_nl, max_size=15), _value),
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")),  # non-UTF-8, no colon...
)
_ours = st.sampled_from(["loyalty", "/loyalty/", "loyalty?lang=en&x=", " loyalty ", "loyalty/",
                        "loyalty?think=", "loyalty?&&&"])
_others = st.one_of(st.sampled_from(["nope", "", "?extension=100", "loyalty2", "LOYALTY"]),
                    st.text(_no_nl, max_size=20))
_script = st.integers(0, 3).flatmap(lambda n: _ours if n < 3 else _others)  # 3 in 4: ours


@st.composite
def header_block(draw) -> list[bytes]:
    lines = draw(st.lists(_header_line, max_size=12))
    script = draw(_script)
    lines.insert(draw(st.integers(0, len(lines))), f"agi_network_script: {script}".encode())
    if draw(st.integers(0, 9)) == 0:  # sometimes a second one, which wins
        lines.append(f"agi_network_script: {draw(_script)}".encode())
    lines = [ln for ln in lines if _text(ln) != ""]  # a blank line would end the header early
    blanks = draw(st.integers(0, 2))
    end = [] if draw(st.integers(0, 9)) == 9 else [b""]  # sometimes the header never ends
    return [b""] * blanks + lines + end


_plausible = st.sampled_from([
    "HANGUP", "200 result=0", "200 result=-1", "200 result=", "200 result=12#",
    "200 result=0012 (timeout)", "200 result=49 endpos=1234", "200 result=1 (a (b) c)",
    "200 result=*1 (timeout) endpos=5", "510 Invalid or unknown command",
    "511 Command Not Permitted on a dead channel or intercept routine",
    "520 Invalid command syntax.  Proper usage not available.",
    "520-Invalid command syntax.  Proper usage follows:", " Usage: GET DATA <file>",
    "520 End of proper usage.", "100 result=0 Trying...", "503 result=-2 Memory allocation",
    "200 result=0\r", "HANGUP\r",
]).map(str.encode)
_garbage = st.one_of(
    st.sampled_from(["200", "200-", "200result=0", "HANGUP ", "hangup", "", "\r", " 200 result=0",
                     "200 Result=0", "２００ result=0", "200 result=0\x00"]).map(str.encode),
    st.builds(lambda t: ("200 result=" + t).encode(), st.text(_no_nl, max_size=20)),
    st.builds(lambda c, s, t: f"{c:03d}{s}{t}".encode(), st.integers(0, 999),
              st.sampled_from([" ", "-", "", "x"]), st.text(_no_nl, max_size=20)),
    st.text(_no_nl, max_size=30).map(str.encode),
    st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")),
    st.integers(MAX_LINE_BYTES - 2, MAX_LINE_BYTES + 2).map(lambda n: b"2" * 3 + b"x" * (n - 3)),
)
_reply = st.integers(0, 9).flatmap(lambda n: _plausible if n < 8 else _garbage)  # 4 in 5


@st.composite
def session(draw) -> tuple[list[bytes], bytes, list[int]]:
    lines = draw(header_block()) + draw(st.lists(_reply, max_size=16))
    partial = draw(st.sampled_from([b"", b"", b"200 res", b"HANG", b"x" * (MAX_LINE_BYTES + 1)]))
    stream = b"".join(ln + b"\n" for ln in lines) + partial
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    return lines, partial, cuts


def _chunks(stream: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *cuts, len(stream)]
    return [stream[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def _sent(value: bytes) -> list[str]:
    assert value == b"" or value.endswith(b"\n")
    return value.decode("utf-8").split("\n")[:-1]


# -- through a StringTransport ----------------------------------------------------------------


@given(session())
@settings(max_examples=examples(400), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
def test_generated_headers_and_replies_get_their_specified_answer(case):
    lines, partial, cuts = case
    stream = b"".join(ln + b"\n" for ln in lines) + partial
    exp = expect(lines, partial)
    event("end=" + (str(exp.end) if exp.script == "loyalty" else
                    "unknown-script" if exp.started else "no-header-end"))
    clock = task.Clock()
    flow, observer = FuzzFlow(), Observer()
    factory = FastAGIFactory({"loyalty": flow}, clock=clock, observer=observer)
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    for chunk in _chunks(stream, cuts):
        proto.dataReceived(chunk)  # nothing may escape
    sent = _sent(transport.value())
    if not exp.started:
        assert sent == [] and flow.calls == 0 and observer.started == 0
        assert transport.disconnecting == exp.aborted
    elif exp.script != "loyalty":
        assert flow.calls == 0 and observer.started == 0
        assert len(sent) == 1 and sent[0].startswith('VERBOSE "loyalty: no such FastAGI script')
    else:
        assert sent == exp.commands
        if exp.end != "connection-lost":
            assert transport.disconnecting  # we ended the call ourselves
            # Abort vs clean close. LineOnlyReceiver checks its leftover buffer for length
            # even after a line closed the connection, so an over-long line after the end of
            # a call can turn a clean close into an abort: harmless, the call is over.
            overlong = any(len(x) > MAX_LINE_BYTES for x in [*lines, partial])
            assert bool(transport.disconnected) == exp.aborted or overlong
    proto.connectionLost(Failure(ConnectionDone()))
    assert clock.getDelayedCalls() == []  # no timer left behind
    assert factory.active_calls == 0
    if exp.started and exp.script == "loyalty":
        assert observer.outcomes == [exp.outcome]
        if exp.end == "agi-error":
            assert isinstance(flow.error, AGICommandError | AGIProtocolError)
        else:
            assert isinstance(flow.error, ChannelHungUp) and flow.error.reason == exp.end
    else:
        assert observer.outcomes == []


# -- through real TCP -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tcp_server():
    flows: dict = {}
    observer = Observer()
    factory = FastAGIFactory({"loyalty": lambda ch: flows["current"](ch)}, observer=observer,
                             idle_timeout_s=5, clock=reactor)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    yield flows, observer, factory, port.getHost().port
    pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))


async def _tcp_case(server, lines, partial, cuts) -> None:
    flows, observer, factory, port = server
    flow = flows["current"] = FuzzFlow()
    observer.outcomes.clear()
    exp = expect(lines, partial)
    stream = b"".join(ln + b"\n" for ln in lines) + partial
    peer = TracedPeer()
    await endpoints.connectProtocol(endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port),
                                    peer)
    for chunk in _chunks(stream, cuts):
        peer.send(chunk)
        await sleep(0)
    if exp.end in (None, "connection-lost") or not exp.started or exp.script != "loyalty":
        # The server now waits for us: once it has written all we expect, hang up on it.
        want = len(exp.commands) if exp.script == "loyalty" else 1 if exp.started else 0
        for _ in range(200):
            if peer.received.count(b"\n") >= want:
                break
            await sleep(0.005)
        await sleep(0.005 if want else 0.02)
        peer.transport.loseConnection()
    await peer.wait_closed()
    for _ in range(100):
        if factory.active_calls == 0 and (observer.outcomes or not flow.calls):
            break
        await sleep(0.005)
    sent = _sent(peer.received)
    if exp.started and exp.script == "loyalty":
        if exp.aborted or not peer.clean:
            # abortConnection() discards what Twisted had not written yet; and when the server
            # closes with bytes of ours still unread (we kept sending after the call ended),
            # the kernel sends an RST, which discards what we had not read yet.
            assert sent == exp.commands[: len(sent)]
        else:
            assert sent == exp.commands
        assert observer.outcomes == [exp.outcome]
    elif exp.started:
        # One VERBOSE (which an abort for a garbage reply in the same read may discard).
        assert flow.calls == 0 and len(sent) <= 1
        assert all(line.startswith("VERBOSE ") for line in sent)
    else:
        assert sent == [] and flow.calls == 0
    assert factory.active_calls == 0


class TracedPeer(RawPeer):
    """A RawPeer that remembers whether the connection ended cleanly (FIN) or not (RST)."""

    clean = True

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.clean = reason.check(ConnectionDone) is not None
        super().connectionLost(reason)


@given(session())
@settings(max_examples=examples(40), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@pytest_twisted.ensureDeferred
async def test_generated_sessions_over_tcp(tcp_server, case):
    await _tcp_case(tcp_server, *case)


# -- quoting round trips ----------------------------------------------------------------------


@given(st.text(_any_no_nl, max_size=80))
@settings(max_examples=examples(500), deadline=None)
def test_quote_arg_round_trips_through_res_agis_parser(text):
    if "\r" in text or "\x00" in text:
        with pytest.raises(ValueError):
            quote_arg(text)
        return
    assert parse_agi_args(quote_arg(text)) == [text]
    assert parse_agi_args("SET VARIABLE " + quote_arg(text) + "\t" + quote_arg(text)) == [
        "SET", "VARIABLE", text, text]


_wire_text = st.text(st.characters(exclude_characters="\n\r\x00", exclude_categories=("Cs",)))


@given(st.lists(_wire_text, min_size=1, max_size=4))
@settings(max_examples=examples(500), deadline=None)
def test_commands_round_trip_through_the_wire_bytes(args):
    """What the simulator (like res_agi) gets from the bytes we send is exactly our words."""
    try:
        line = build_command("EXEC", *args)
    except ValueError:
        size = len(" ".join(["EXEC", *(quote_arg(a) for a in args)]).encode())
        assert size + 1 > MAX_COMMAND_BYTES  # refused only for res_agi's 2047-byte buffer
        return
    wire = line.encode("utf-8") + b"\n"
    assert len(wire) <= MAX_COMMAND_BYTES
    received = wire[:-1].decode("utf-8", errors="replace")
    assert parse_agi_args(received) == ["EXEC", *args]


def test_the_command_length_limit_is_exact():
    base = len(build_command("VERBOSE", "").encode())
    fits = build_command("VERBOSE", "x" * (MAX_COMMAND_BYTES - 1 - base))
    assert len(fits.encode()) + 1 == MAX_COMMAND_BYTES
    with pytest.raises(ValueError):
        build_command("VERBOSE", "x" * (MAX_COMMAND_BYTES - base))
    for bad in ("\ud800", "a\udfffb"):  # a lone surrogate cannot be sent as UTF-8
        with pytest.raises(ValueError):
            build_command("VERBOSE", bad)


@pytest.fixture(scope="module")
def set_var_server():
    seen: list[str] = []

    async def flow(ch: AGIChannel) -> None:
        value = ch.args[0] if ch.args else ""
        await ch.set_variable("V", value)
        seen.append((await ch.get_variable("V")) or "")

    factory = FastAGIFactory({"loyalty": flow}, clock=reactor)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    yield seen, port.getHost().port
    pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))


async def _set_var_case(server, text: str) -> None:
    seen, port = server
    seen.clear()
    result = await simulate_call("127.0.0.1", port, callerid="1", args=[text], timeout_s=5)
    assert result.variables_set == {"V": text}
    assert seen == [text]


@given(st.text(st.characters(exclude_characters="\n\r\x00", exclude_categories=("Cs",)),
               max_size=60))
@settings(max_examples=examples(30), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@pytest_twisted.ensureDeferred
async def test_any_text_survives_header_set_and_get_variable_end_to_end(set_var_server, text):
    # agi_arg_1 header -> ch.args -> SET VARIABLE -> simulator -> GET VARIABLE -> flow.
    await _set_var_case(set_var_server, text)


# -- bugs found by the fuzzers: deterministic reproductions -----------------------------------


def _call(flow, env: bytes = b"agi_network_script: loyalty\n\n"):
    clock = task.Clock()
    factory = FastAGIFactory({"loyalty": flow}, clock=clock, idle_timeout_s=5)
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    proto.dataReceived(env)
    return proto, transport, clock


@pytest.mark.parametrize("reply", [b"200 result=1234\n", b"200 result=1114112\n",
                                   b"200 result=55296 endpos=0\n", b"200 result=10\n"])
def test_prompt_commands_reject_codes_that_are_not_dtmf(reply):
    got: list = []

    async def flow(ch: AGIChannel) -> None:
        try:
            got.append(await ch.stream_file("main_menu", "12"))
        except Exception as e:  # noqa: BLE001 - the test inspects what escaped
            got.append(e)

    proto, _, _ = _call(flow)
    proto.dataReceived(reply)
    assert len(got) == 1 and isinstance(got[0], AGIProtocolError), got


@pytest.mark.parametrize("reply", [b"200 result=" + b"7" * 5000 + b"\n",
                                   b"200 result=0 endpos=" + b"9" * 5000 + b"\n"])
def test_huge_numbers_in_a_reply_do_not_escape_the_protocol(reply):
    got: list = []

    async def flow(ch: AGIChannel) -> None:
        try:
            got.append(await ch.answer())
        except AGIError as e:
            got.append(e)

    proto, transport, _ = _call(flow)
    proto.dataReceived(reply)  # raises ValueError today
    proto.connectionLost(Failure(ConnectionDone()))
    assert len(got) == 1


def test_provisional_100_reply_waits_for_the_final_reply():
    got: list = []

    async def flow(ch: AGIChannel) -> None:
        try:
            got.append(await ch.command('GOSUB "ctx" "s" "1"'))
        except AGIError as e:
            got.append(e)

    proto, _, _ = _call(flow)
    proto.dataReceived(b"100 result=0 Trying...\n200 result=0 Gosub complete\n")
    assert len(got) == 1 and not isinstance(got[0], AGIError), got
    assert got[0].raw == "200 result=0 Gosub complete"


def test_args_ignore_keys_that_are_not_decimal_numbers():
    got: list = []

    async def flow(ch: AGIChannel) -> None:
        try:
            got.append(ch.args)
        except Exception as e:  # noqa: BLE001 - the test inspects what escaped
            got.append(e)

    _call(flow, "agi_network_script: loyalty\nagi_arg_1: a\nagi_arg_²: b\n\n".encode())
    assert got == [["a"]]


def test_an_endless_520_block_is_cut_off():
    async def flow(ch: AGIChannel) -> None:
        try:
            await ch.answer()
        except AGIError:
            pass

    proto, transport, clock = _call(flow)
    proto.dataReceived(b"520-Invalid command syntax.  Proper usage follows:\n")
    for _ in range(200):  # 1.6 MB of usage text, one line per second for 200 s
        proto.dataReceived(b"u" * 8000 + b"\n")
        clock.advance(1)
    assert transport.disconnecting


def test_a_peer_sending_only_blank_lines_is_dropped():
    factory = FastAGIFactory({}, clock=(clock := task.Clock()), idle_timeout_s=5)
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    for _ in range(100):  # 400 s, never a header
        clock.advance(4)
        proto.dataReceived(b"\n")
    assert transport.disconnecting
