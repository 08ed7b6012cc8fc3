"""FastAGI peer faults over real TCP on 127.0.0.1: abrupt disconnects, HANGUP storms, garbage
and over-long lines, silent peers, peers that stop reading, and the call cap. In every case the
faulty connection gets its specified answer and well-behaved simulated calls to the same server,
running at the same time, complete normally."""

from __future__ import annotations

import socket
import struct

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from harness.simulator import simulate_call
from ivr.agi import AGIChannel, AGICommandError, AGIProtocolError, ChannelHungUp
from tests.faults.conftest import AGIServer, sleep, wait_until
from tests.ivr.conftest import HEADER, RawPeer, connect_raw

ROUNDS = 3
GOOD_COMMANDS = (
    ["ANSWER"]
    + ['GET DATA "enter_pin" "2000" "4"', 'STREAM FILE "main_menu" "12"'] * ROUNDS
    + ['SET VARIABLE "LOYALTY_RESULT" "ok"']
)


class Flows:
    """The test flows and what they saw. ``loyalty`` loops on GET DATA / STREAM FILE and
    thinks ``?think=s`` seconds before each command; ``gated`` waits for ``release()`` after
    ANSWER; ``blast`` streams a 1900-byte prompt name until the call ends."""

    def __init__(self) -> None:
        self.hungup: list[str] = []  # ChannelHungUp reasons the flows got
        self.errors: list[Exception] = []  # AGICommandError / AGIProtocolError the flows got
        self.completed = 0
        self._gate: list[defer.Deferred] = []
        self.waiting = 0

    def release(self) -> None:
        gate, self._gate = self._gate, []
        for d in gate:
            d.callback(None)

    async def _think(self, ch: AGIChannel) -> None:
        think = float(ch.query.get("think", "0") or 0)
        if think:
            await sleep(think)

    async def loyalty(self, ch: AGIChannel) -> None:
        try:
            await self._think(ch)
            await ch.answer()
            for _ in range(ROUNDS):
                await self._think(ch)
                await ch.get_data("enter_pin", 2000, 4)
                await self._think(ch)
                await ch.stream_file("main_menu", "12")
            await ch.set_variable("LOYALTY_RESULT", "ok")
            self.completed += 1
        except ChannelHungUp as e:
            self.hungup.append(e.reason)
            raise
        except (AGICommandError, AGIProtocolError) as e:
            # What a product flow does with a reply it cannot use: give up on the call.
            self.errors.append(e)

    async def gated(self, ch: AGIChannel) -> None:
        try:
            await ch.answer()
            d: defer.Deferred = defer.Deferred()
            self._gate.append(d)
            self.waiting += 1
            await d
            self.waiting -= 1
            for _ in range(ROUNDS):
                await ch.get_data("enter_pin", 2000, 4)
                await ch.stream_file("main_menu", "12")
            await ch.set_variable("LOYALTY_RESULT", "ok")
            self.completed += 1
        except ChannelHungUp as e:
            self.hungup.append(e.reason)
            await ch.set_variable("LOYALTY_RESULT", "hungup")  # allowed on a dead channel
            raise

    async def blast(self, ch: AGIChannel) -> None:
        try:
            while True:
                await ch.stream_file("x" * 1900)
        except ChannelHungUp as e:
            self.hungup.append(e.reason)
            raise

    def table(self) -> dict:
        return {"loyalty": self.loyalty, "gated": self.gated, "blast": self.blast}


@pytest.fixture
def flows() -> Flows:
    return Flows()


def good_calls(server: AGIServer, n: int = 2, think: float = 0.02) -> defer.Deferred:
    """``n`` well-behaved simulated calls, started now, with ``think`` s between commands."""
    return defer.gatherResults([
        defer.Deferred.fromCoroutine(simulate_call(
            "127.0.0.1", server.port, script=f"loyalty?think={think}",
            callerid=f"1380000{i:04d}", keys="1234", timeout_s=10))
        for i in range(n)
    ], consumeErrors=True)


def assert_good(results: list) -> None:
    for r in results:
        assert not r.timed_out
        assert r.hung_up_by == "server"
        assert r.commands == GOOD_COMMANDS
        assert r.variables_set == {"LOYALTY_RESULT": "ok"}


async def finish(server: AGIServer, good: defer.Deferred) -> None:
    """The good calls completed normally; no call or connection is left behind."""
    assert_good(await good)
    await wait_until(lambda: not server.open_connections, timeout=3)
    assert server.factory.active_calls == 0


async def header_then_first_command(server: AGIServer, script: bytes = b"loyalty") -> RawPeer:
    peer = await connect_raw(server.port)
    peer.send(HEADER.replace(b"agi_network_script: loyalty", b"agi_network_script: " + script))
    return peer


async def to_get_data(server: AGIServer) -> RawPeer:
    """A raw peer with the call at its first GET DATA (ANSWER already answered)."""
    peer = await header_then_first_command(server)
    assert await peer.line() == b"ANSWER\n"
    peer.send(b"200 result=0\n")
    assert await peer.line() == b'GET DATA "enter_pin" "2000" "4"\n'
    return peer


async def reset(peer: RawPeer) -> None:
    """Close with a TCP RST instead of a FIN (after what was sent has left)."""
    await sleep(0.02)  # abortConnection() discards what Twisted has not written yet
    peer.transport.getHandle().setsockopt(
        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.transport.abortConnection()


def script_calls(server: AGIServer, script: str) -> list:
    return [p for p in server.protocols if p.env.get("network_script") == script]


# -- abrupt disconnects ---------------------------------------------------------------------------


async def _fin(p: RawPeer) -> None:
    p.transport.loseConnection()


async def _mid_line(p: RawPeer) -> None:
    p.send(b"200 resu")
    p.transport.loseConnection()


async def _mid_block(p: RawPeer) -> None:
    p.send(b"520-Invalid command syntax.  Proper usage follows:\n Usage: GET DATA\n")
    p.transport.loseConnection()


async def _hangup_then_rst(p: RawPeer) -> None:
    p.send(b"HANGUP\n")
    await reset(p)


DISCONNECTS = {
    "fin": _fin, "rst": reset, "mid-line": _mid_line, "mid-520-block": _mid_block,
    "hangup-then-rst": _hangup_then_rst,
}


@pytest.mark.parametrize("how", sorted(DISCONNECTS))
@pytest_twisted.ensureDeferred
async def test_abrupt_disconnect_mid_command_ends_only_that_call(agi, flows, how):
    server = agi(flows.table())
    good = good_calls(server)
    peer = await to_get_data(server)
    await DISCONNECTS[how](peer)
    await finish(server, good)
    assert flows.hungup == ["connection-lost"]
    assert sorted(server.observer.outcomes) == ["completed", "completed", "connection-lost"]


@pytest.mark.parametrize("cut", [0, 1, len(HEADER) // 2, len(HEADER) - 1, len(HEADER)])
@pytest_twisted.ensureDeferred
async def test_disconnect_during_or_right_after_the_header(agi, flows, cut):
    server = agi(flows.table())
    good = good_calls(server)
    peer = await connect_raw(server.port)
    peer.send(HEADER[:cut])
    await reset(peer)
    await finish(server, good)
    if cut == len(HEADER):  # the call may have started before the RST was seen
        assert flows.hungup in ([], ["connection-lost"])
    else:
        assert flows.hungup == []
        assert server.observer.started == 2


# -- HANGUP storms --------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_hangup_storm_around_a_reply(agi, flows):
    """HANGUP is an event, never a reply, however many arrive: the command still gets its own
    reply, then the next live command fails at once with ChannelHungUp without being sent."""
    server = agi(flows.table())
    good = good_calls(server)
    peer = await to_get_data(server)
    peer.send(b"HANGUP\n" * 500 + b"200 result=12 (timeout)\n" + b"HANGUP\n" * 500)
    await peer.wait_closed()
    assert peer.received.endswith(b'GET DATA "enter_pin" "2000" "4"\n')  # nothing after it
    await finish(server, good)
    assert flows.hungup == ["hangup"]
    assert "hangup" in server.observer.outcomes


@pytest_twisted.ensureDeferred
async def test_hangup_storm_while_the_flow_is_idle(agi, flows):
    server = agi(flows.table())
    good = good_calls(server)
    peer = await header_then_first_command(server, b"gated")
    assert await peer.line() == b"ANSWER\n"
    peer.send(b"200 result=0\n")
    await wait_until(lambda: flows.waiting == 1)
    for _ in range(5):
        peer.send(b"HANGUP\n" * 200)
        await sleep(0.01)
    flows.release()
    # The live GET DATA is refused locally; only the dead-channel-safe SET VARIABLE goes out.
    assert await peer.line() == b'SET VARIABLE "LOYALTY_RESULT" "hungup"\n'
    peer.send(b"200 result=1\n" + b"HANGUP\n" * 50)
    await peer.wait_closed()
    await finish(server, good)
    assert flows.hungup == ["hangup"]


@pytest_twisted.ensureDeferred
async def test_hangup_lines_inside_the_header(agi, flows):
    """Asterisk never sends HANGUP before the header's empty line. Such a line has no colon, so
    it is a malformed header line and is ignored (pinned); enough of them exceed the header
    line cap (256) and the connection is dropped without a call."""
    server = agi(flows.table())
    good = good_calls(server)
    peer = await connect_raw(server.port)
    peer.send(b"HANGUP\n" * 20 + HEADER[:-1] + b"HANGUP\n" * 20 + b"\n")
    assert await peer.line() == b"ANSWER\n"  # the call started normally
    peer.send(b"200 result=0\n")
    assert await peer.line() == b'GET DATA "enter_pin" "2000" "4"\n'
    peer.transport.loseConnection()

    flood = await connect_raw(server.port)
    flood.send(b"agi_network_script: loyalty\n" + b"HANGUP\n" * 300 + b"\n")
    await flood.wait_closed()
    assert flood.received == b""
    await finish(server, good)
    assert flows.hungup == ["connection-lost"]
    assert server.observer.started == 3


# -- garbage and over-long lines --------------------------------------------------------------

DROPPED = [
    (b"garbage\n", "protocol-error"),
    (b"\x00\xff\xfe\x80 binary junk\r\n", "protocol-error"),
    (b"200\n", "protocol-error"),
    (b"2000 result=0\n", "protocol-error"),
    (b"200-result=0\n", "protocol-error"),
    (b"x" * 9000 + b"\n", "line-too-long"),
    (b"x" * 9000, "line-too-long"),  # no newline needed
    (b"200 result=0 (" + b"y" * 8200 + b")\n", "line-too-long"),
]


@pytest.mark.parametrize(("payload", "reason"), DROPPED)
@pytest_twisted.ensureDeferred
async def test_garbage_and_over_long_lines_drop_the_connection(agi, flows, payload, reason):
    server = agi(flows.table())
    good = good_calls(server)
    peer = await to_get_data(server)
    peer.send(payload)
    await peer.wait_closed()
    await finish(server, good)
    assert flows.hungup == [reason]
    assert reason in server.observer.outcomes


ANSWERED = [
    (b"599 Something odd\n", AGICommandError),
    (b"510 Invalid or unknown command\n", AGICommandError),
    (b"520-Invalid command syntax.  Proper usage follows:\n200 result=1\nHANGUP\n"
     b"520 End of proper usage.\n", AGICommandError),
    (b"200 result=12ab\n", AGIProtocolError),  # GET DATA must return DTMF
    (b"200 result=\xe4\xb8\xad\n", AGIProtocolError),
]


@pytest.mark.parametrize(("payload", "error"), ANSWERED)
@pytest_twisted.ensureDeferred
async def test_unusable_replies_give_the_flow_an_error_and_end_the_call_cleanly(
        agi, flows, payload, error):
    server = agi(flows.table())
    good = good_calls(server)
    peer = await to_get_data(server)
    peer.send(payload)
    await peer.wait_closed()
    await finish(server, good)
    assert [type(e) for e in flows.errors] == [error]
    assert flows.hungup == []
    bad = [p for p in server.protocols if p.env and p.close_reason]
    assert bad == []  # closed cleanly by the flow's end, not aborted


@pytest_twisted.ensureDeferred
async def test_511_reply_is_a_hangup(agi, flows):
    server = agi(flows.table())
    good = good_calls(server)
    peer = await to_get_data(server)
    peer.send(b"511 Command Not Permitted on a dead channel or intercept routine\n")
    await peer.wait_closed()
    await finish(server, good)
    assert flows.hungup == ["dead-channel"]


@pytest_twisted.ensureDeferred
async def test_unsolicited_reply_while_the_flow_thinks_drops_the_connection(agi, flows):
    server = agi(flows.table())
    good = good_calls(server)
    peer = await header_then_first_command(server, b"gated")
    assert await peer.line() == b"ANSWER\n"
    peer.send(b"200 result=0\n")
    await wait_until(lambda: flows.waiting == 1)
    peer.send(b"200 result=0\n")  # no command outstanding
    await peer.wait_closed()
    flows.release()
    await finish(server, good)
    assert flows.hungup == ["protocol-error"]


# -- silent peers ---------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_silent_peers_are_dropped_by_the_idle_timeout(agi, flows):
    server = agi(flows.table(), idle_timeout_s=0.3)
    good = good_calls(server, n=3, think=0.03)
    start = reactor.seconds()
    mute = await connect_raw(server.port)  # never sends the header
    partial = await connect_raw(server.port)
    partial.send(b"agi_network: yes\nagi_network_scr")  # stops mid-line
    half = await connect_raw(server.port)
    half.send(HEADER[: len(HEADER) // 2])  # stops mid-header
    stuck = await header_then_first_command(server)  # never answers ANSWER
    for peer in (mute, partial, half, stuck):
        await peer.wait_closed(timeout=3)
    assert reactor.seconds() - start < 2.0
    assert mute.received == partial.received == half.received == b""
    assert stuck.received == b"ANSWER\n"
    await finish(server, good)
    assert flows.hungup == ["timeout"]
    assert sorted(server.observer.outcomes) == ["completed"] * 3 + ["timeout"]


# -- peers that stop reading ----------------------------------------------------------------------


def unread_socket(port: int) -> socket.socket:
    """A client socket with a tiny receive buffer that the test never reads."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    s.connect(("127.0.0.1", port))  # the kernel completes the handshake without the reactor
    s.setblocking(False)
    return s


def buffered(proto) -> int:
    """Bytes the server transport holds in user space (the kernel buffers are full)."""
    t = proto.transport
    return len(t.dataBuffer) + t._tempDataLen - t.offset


@pytest_twisted.ensureDeferred
async def test_peer_that_stops_reading_is_dropped_and_others_are_served(agi, flows):
    server = agi(flows.table(), idle_timeout_s=0.3, sndbuf=4096)
    good = good_calls(server, n=3, think=0.03)
    s = unread_socket(server.port)
    try:
        # Asterisk would never answer without reading; this peer answers 300 commands blind,
        # so the server writes ~570 KB that nobody reads, then waits for reply 301.
        s.send(b"agi_network_script: blast\n\n" + b"200 result=0\n" * 300)
        await wait_until(lambda: script_calls(server, "blast"))
        [stuck] = script_calls(server, "blast")
        await wait_until(lambda: stuck.closed or buffered(stuck) > 100_000, timeout=3)
        assert not stuck.closed and buffered(stuck) > 100_000  # the buffers really are full
        await wait_until(lambda: stuck.closed, timeout=3)  # abortConnection ignores the buffer
        assert stuck.close_reason == "timeout"
        await finish(server, good)
        assert flows.hungup == ["timeout"]
    finally:
        s.close()


@pytest_twisted.ensureDeferred
async def test_finished_call_to_a_peer_that_stops_reading_is_eventually_closed(agi, flows):
    async def blast_then_end(ch: AGIChannel) -> None:
        for _ in range(300):
            await ch.stream_file("x" * 1900)

    server = agi({"end": blast_then_end}, idle_timeout_s=0.2, sndbuf=4096)
    s = unread_socket(server.port)
    try:
        s.send(b"agi_network_script: end\n\n" + b"200 result=0\n" * 300)
        await wait_until(lambda: server.observer.outcomes == ["completed"], timeout=3)
        [proto] = script_calls(server, "end")
        assert buffered(proto) > 100_000
        # Expected: dropped within a few idle timeouts, like a silent peer.
        await wait_until(lambda: proto.closed, timeout=1.5)
    finally:
        s.close()
        await sleep(0.05)


# -- the call cap ---------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_calls_beyond_max_calls_are_sent_back_busy_and_the_others_are_unaffected(
        agi, flows):
    server = agi(flows.table(), max_calls=2)
    first = defer.gatherResults([
        defer.Deferred.fromCoroutine(simulate_call(
            "127.0.0.1", server.port, script="gated", callerid=f"1390000000{i}", keys="1234"))
        for i in range(2)])
    await wait_until(lambda: flows.waiting == 2)
    assert server.factory.active_calls == 2
    busy = await defer.gatherResults([
        defer.Deferred.fromCoroutine(simulate_call(
            "127.0.0.1", server.port, callerid=f"1370000000{i}", keys="1234"))
        for i in range(4)])
    for r in busy:
        assert r.commands == ['SET VARIABLE "LOYALTY_NEXT" "busy"']
        assert r.variables_set == {"LOYALTY_NEXT": "busy"}
        assert r.hung_up_by == "server" and not r.timed_out
    assert server.factory.rejected_calls == 4
    assert server.factory.active_calls == 2 and server.observer.started == 2
    flows.release()
    assert_good(await first)
    assert server.factory.active_calls == 0
    assert_good(await good_calls(server, n=2, think=0))  # the capacity is back
    assert server.factory.rejected_calls == 4


@pytest_twisted.ensureDeferred
async def test_a_faulty_call_frees_its_slot(agi, flows):
    server = agi(flows.table(), max_calls=1, idle_timeout_s=0.3)
    for fault in ("rst", "garbage", "silence"):
        if fault == "silence":  # never answers ANSWER (GET DATA would add its input time)
            peer = await header_then_first_command(server)
            assert await peer.line() == b"ANSWER\n"
        else:
            peer = await to_get_data(server)
        assert server.factory.active_calls == 1
        if fault == "rst":
            await reset(peer)
        elif fault == "garbage":
            peer.send(b"garbage\n")
        await wait_until(lambda: server.factory.active_calls == 0, timeout=3)
        assert_good(await good_calls(server, n=1, think=0))
    assert server.factory.rejected_calls == 0
    assert flows.hungup == ["connection-lost", "protocol-error", "timeout"]
