"""The ESME session on a fake clock and transport: one timer for all response timeouts, plain
callbacks for submit_sm, and the answers to one read written together."""

from __future__ import annotations

import struct
from dataclasses import replace

import pytest
from twisted.internet import task
from twisted.internet.testing import StringTransport

from sms.encoding import Part
from sms.pdu import ESME_RINVCMDLEN, ESME_ROK, PduReader, decode_pdu, encode_pdu
from sms.session import SubmitResult, TemporaryError
from tests.sms.conftest import Cfg, bound_session


class CountingTransport(StringTransport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        super().write(data)


def bound(clock: task.Clock, **cfg):
    config = replace(Cfg(), **{"window": 10, "max_timeouts": 100, "enquire_link_s": 1000.0,
                               "dead_link_s": 1000.0, **cfg})
    return bound_session(clock, config, CountingTransport())


def sent(transport: StringTransport) -> list:
    pdus = [decode_pdu(f) for f in PduReader().feed(transport.value())]
    transport.clear()
    return pdus


def outcomes(d, into: list, name: str) -> None:
    d.addCallbacks(lambda r: into.append((name, "ok", r)),
                   lambda f: into.append((name, "failed", f.getErrorMessage())))


def test_each_request_times_out_at_its_own_deadline():
    clock = task.Clock()
    proto, transport = bound(clock, response_timeout_s=10.0)
    got: list = []
    outcomes(proto.submit("13800000001", "a"), got, "a")  # t=0: due at 10
    clock.advance(3)
    outcomes(proto.submit("13800000002", "b"), got, "b")  # t=3: due at 13
    clock.advance(3)
    outcomes(proto.submit("13800000003", "c"), got, "c")  # t=6: due at 16
    clock.advance(0.5)
    outcomes(proto._request("enquire_link", timeout=1.0), got, "ping")  # t=6.5: due at 7.5
    a, b, c, ping = sent(transport)
    proto.dataReceived(encode_pdu("submit_sm_resp", b.sequence, message_id="b1"))
    assert got == [("b", "ok", SubmitResult(["b1"], 0, 1))]

    clock.advance(0.75)  # 7.25 (binary fractions: exact times)
    assert len(got) == 1
    clock.advance(0.25)  # 7.5
    assert got[1:] == [("ping", "failed", "enquire_link response timeout")]
    clock.advance(2.25)  # 9.75
    assert len(got) == 2
    clock.advance(0.25)  # 10
    assert got[2:] == [("a", "failed", "submit_sm response timeout")]
    clock.advance(5.75)  # 15.75: b was answered, c not yet due
    assert len(got) == 3
    clock.advance(0.25)  # 16
    assert got[3:] == [("c", "failed", "submit_sm response timeout")]
    assert not proto._outstanding and proto._in_flight == 0
    assert [call.func for call in clock.getDelayedCalls()] == [proto._on_idle, proto._link_dead]


def test_answered_requests_leave_one_timer_that_lapses_quietly():
    clock = task.Clock()
    proto, transport = bound(clock, response_timeout_s=10.0)
    got: list = []
    for i in range(5):
        outcomes(proto.submit(f"1380000000{i}", "x"), got, str(i))
    for pdu in sent(transport):
        proto.dataReceived(encode_pdu("submit_sm_resp", pdu.sequence, message_id="m"))
    assert len(clock.getDelayedCalls()) == 3  # idle, dead link, the response timer
    clock.advance(10)
    assert len(got) == 5 and all(outcome == "ok" for _, outcome, _ in got)
    assert len(clock.getDelayedCalls()) == 2


def test_a_lost_connection_fails_every_outstanding_request_once():
    clock = task.Clock()
    proto, transport = bound(clock)
    got: list = []
    outcomes(proto.submit("13800000001", "a"), got, "a")
    outcomes(proto._request("enquire_link"), got, "ping")
    proto.connectionLost()
    assert sorted(name for name, outcome, _ in got if outcome == "failed") == ["a", "ping"]
    assert not clock.getDelayedCalls()
    clock.advance(100)
    assert len(got) == 2


def test_a_garbled_submit_sm_resp_fails_that_submit():
    clock = task.Clock()
    proto, transport = bound(clock)
    got: list = []
    outcomes(proto.submit("13800000001", "a"), got, "a")
    (submit,) = sent(transport)
    body = b"no NUL"  # an unterminated message_id
    proto.dataReceived(struct.pack(">LLLL", 16 + len(body), 0x80000004, 0, submit.sequence)
                       + body)
    assert got == [("a", "failed", "garbled submit_sm response")]
    assert not proto._outstanding and proto._in_flight == 0


def test_a_multipart_message_still_fails_with_its_first_error():
    clock = task.Clock()
    proto, transport = bound(clock)
    got: list = []
    outcomes(proto.submit("13800000001", "积分" * 80, max_parts=3), got, "long")
    parts = sent(transport)
    assert len(parts) == 3
    proto.dataReceived(encode_pdu("submit_sm_resp", parts[0].sequence, message_id="p1"))
    proto.dataReceived(encode_pdu("submit_sm_resp", parts[1].sequence, 0x58))
    assert got[0][:2] == ("long", "failed") and "0x00000058" in got[0][2]


def test_the_answers_to_one_read_go_out_in_one_write():
    clock = task.Clock()
    proto, transport = bound(clock)
    transport.writes.clear()
    mos = b"".join(encode_pdu("deliver_sm", 100 + i, source_addr=f"1380000000{i}",
                              destination_addr="10086", short_message=b"JF")
                   for i in range(5))
    proto.dataReceived(mos + encode_pdu("enquire_link", 200))
    assert len(transport.writes) == 1
    answers = sent(transport)
    assert [(p.command, p.sequence, p.status) for p in answers] == [
        *(("deliver_sm_resp", 100 + i, ESME_ROK) for i in range(5)),
        ("enquire_link_resp", 200, ESME_ROK)]


def test_a_nack_for_a_bad_frame_is_written_before_the_connection_is_closed():
    clock = task.Clock()
    proto, transport = bound(clock)
    order: list[str] = []
    transport.loseConnection = lambda: order.append("close")  # type: ignore[method-assign]
    real_write = transport.write
    transport.write = lambda data: (order.append("write"), real_write(data))  # type: ignore
    proto.dataReceived(encode_pdu("enquire_link", 7) + b"\x00\x00\x00\x05" + bytes(12))
    assert order == ["write", "close"]
    answers = sent(transport)
    assert [(p.command, p.status) for p in answers] == [
        ("enquire_link_resp", ESME_ROK), ("generic_nack", ESME_RINVCMDLEN)]


@pytest.mark.parametrize("window", [1, 3])
def test_a_window_of_submits_is_sent_as_answers_free_it(window):
    clock = task.Clock()
    proto, transport = bound(clock)
    proto.config = replace(proto.config, window=window)
    got: list = []
    for i in range(4):
        outcomes(proto.submit(f"1380000000{i}", "x"), got, str(i))
    answered = 0
    while answered < 4:
        pdus = sent(transport)
        assert 0 < len(pdus) <= window
        proto.dataReceived(b"".join(encode_pdu("submit_sm_resp", p.sequence, message_id=str(
            p.sequence)) for p in pdus))
        answered += len(pdus)
    assert [name for name, outcome, _ in got if outcome == "ok"] == ["0", "1", "2", "3"]
    assert not isinstance(got[0][2], TemporaryError)


def test_a_failing_outcome_handler_does_not_stop_the_read(no_logged_errors):
    clock = task.Clock()
    proto, transport = bound(clock)
    got: list = []
    outcomes(proto.submit("13800000001", "a"), got, "a")
    (submit,) = sent(transport)

    def broken() -> None:
        raise RuntimeError("boom")

    proto.rate.on_success = broken  # type: ignore[method-assign]
    proto.dataReceived(encode_pdu("submit_sm_resp", submit.sequence, message_id="m")
                       + encode_pdu("enquire_link", 5))
    assert [(p.command, p.sequence) for p in sent(transport)] == [("enquire_link_resp", 5)]
    assert proto.is_bound and not proto._outstanding
    assert [e["log_failure"].value.args for e in no_logged_errors] == [("boom",)]
    no_logged_errors.clear()  # logged, as a Deferred would have


def test_a_part_that_cannot_be_encoded_fails_at_once_and_the_next_mt_goes():
    """A part the codec refuses (a short_message over 255 bytes) fails its submit as a
    permanent error there and then: nothing waits for a response that cannot come, no
    timeout counts against the link, and the next MT is sent."""
    clock = task.Clock()
    proto, transport = bound(clock, response_timeout_s=10.0, max_timeouts=1)
    got: list = []
    bad = Part(data_coding=0, esm_class=0, short_message=b"x" * 300, text="x" * 300)
    outcomes(proto.submit("13800000001", [bad]), got, "bad")
    assert got and got[0][:2] == ("bad", "failed") and "cannot be encoded" in got[0][2]
    assert not proto._outstanding and proto._in_flight == 0 and sent(transport) == []
    outcomes(proto.submit("13800000002", "ok"), got, "good")
    (good,) = sent(transport)
    proto.dataReceived(encode_pdu("submit_sm_resp", good.sequence, message_id="g1"))
    clock.advance(20)  # past any response timeout
    assert got[1:] == [("good", "ok", SubmitResult(["g1"], 0, 1))] and proto.is_bound
