"""Main-menu option 6 end to end: a make-up claim keyed in on the hotline with a voice note,
resolved by ops with `loyalty tickets resolve --credit`, its outcome sent by SMS once and read
back both with CX over SMPP and on the hotline (call simulator and SMSC simulator, real TCP,
one database)."""

# ruff: noqa: F811 - pytest fixtures imported from tests.ivr.hotline_kit
from __future__ import annotations

import json
import re

import pytest_twisted
from twisted.internet import defer

from core.accounts import check_ledger
from core.cli import main as loyalty
from harness.smsc_simulator import SMSCSimulator
from tests.ivr.hotline_kit import ZH_MEMBER, after, heard, rig  # noqa: F401 - fixtures
from tests.sms.channel_helpers import Channel, Clock, converse


def spelled_ref(tokens: list[str]) -> str:
    refs = [t[2:] for t in tokens if re.fullmatch(r"a:(BD|TS)\d{12}", t)]
    assert refs, tokens
    return refs[-1]


@pytest_twisted.ensureDeferred
async def test_claim_with_voice_note_resolved_with_credit_read_by_cx_and_on_the_hotline(
        rig, config, database_url, monkeypatch, capsys, tmp_path):
    import core.cli

    # 6 claims, 1 make-up claim, record (#), 1 hear it, 2 record again (#), 3 send,
    # 1 SMS copy, then silence.
    result = await rig.call(ZH_MEMBER, "61#12#31TTTT", sounds_dir=tmp_path)
    tokens = heard(result)
    assert after(tokens, "k:6")[:4] == ["k:6", "tkt_menu", "k:1", "tkt_record_intro"]
    kinds = [e.kind for e in result.transcript]
    records = [e for e in result.transcript if e.kind == "record"]
    assert len(records) == 2 and kinds.count("beep") == 2 and kinds.count("playback") == 1
    assert [e.detail for e in records] == ["dtmf 8000 samples"] * 2
    ref = spelled_ref(tokens)
    assert after(tokens, "tkt_registered")[:4] == ["tkt_registered", f"a:{ref}", "sms_offer",
                                                   "k:1"]
    second = records[1].value
    assert result.recordings[second].is_file()  # the simulator wrote the WAV

    monkeypatch.setenv("LOYALTY_DATABASE_URL", database_url)
    monkeypatch.setattr(core.cli.Context, "now", lambda self: rig.now)
    assert loyalty(["tickets", "show", ref, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["kind"], shown["channel"], shown["status"]) == ("makeup", "ivr", "open")
    assert shown["recording_path"] == f"{second}.wav"

    before = rig.balance(ZH_MEMBER)
    assert loyalty(["tickets", "resolve", ref, "--outcome", "核实无误", "--credit", "500"]) == 0
    assert loyalty(["tickets", "resolve", ref, "--outcome", "again", "--credit", "500"]) == 1
    assert rig.balance(ZH_MEMBER) == before + 500
    assert [e.amount for e in rig.ledger(ZH_MEMBER) if e.reason == "makeup"] == [500]
    assert rig.run(check_ledger) == []

    # The SMS side sends what is queued (the IVR copy, the outcome) and answers CX.
    sim = SMSCSimulator("loyalty", "secret")
    sim.listen(0)
    ch = Channel(sim, rig.store, rig.rules, config, clock=Clock(rig.now), mo_rate_limit=1000)
    await ch.start()
    try:
        outcome = f"【积分补登】您的受理号{ref}已处理完毕：核实无误，已为您补登500积分。"
        await sim.wait_for(lambda: outcome in sim.texts_to(ZH_MEMBER), timeout=5)
        assert await converse(ch, ZH_MEMBER, f"CX {ref}") == outcome
        assert sim.texts_to(ZH_MEMBER).count(outcome) == 2  # the outcome, then the CX reply
        assert [r["template"] for r in ch.outbox(ZH_MEMBER)].count("ticket_resolved") == 1
    finally:
        await ch.stop()
        await defer.ensureDeferred(_stop(sim))

    # On the hotline: 6, 3 the latest one's status.
    result = await rig.call(ZH_MEMBER, "63TTTT")
    tokens = heard(result)
    assert after(tokens, "tkt_latest")[:6] == ["tkt_latest", f"a:{ref}", "tkt_status_resolved",
                                               "tkt_credited", "#500", "unit_points"]


async def _stop(sim: SMSCSimulator) -> None:
    await sim.stop()


@pytest_twisted.ensureDeferred
async def test_complaint_about_the_latest_order_and_status_without_tickets(rig, tmp_path):
    from core.redemption import recent_orders
    from core.tickets import latest_ticket

    result = await rig.call(ZH_MEMBER, "63TTTT")
    assert after(heard(result), "k:6")[:4] == ["k:6", "tkt_menu", "k:3", "tkt_none"]

    order_no = rig.run(recent_orders, ZH_MEMBER, limit=1)[0].order_no
    # 6, 2 complaint, 1 about the latest order, record (#), 3 send, no SMS copy.
    result = await rig.call(ZH_MEMBER, "621#3TTTT", sounds_dir=tmp_path)
    tokens = heard(result)
    assert after(tokens, "k:2")[:5] == ["k:2", "tkt_about_order", f"d:{order_no}",
                                        "tkt_order_keys", "k:1"]
    ticket = rig.run(latest_ticket, ZH_MEMBER)
    assert (ticket.kind, ticket.order_no, ticket.channel) == ("complaint", order_no, "ivr")
    assert ticket.recording_path.endswith("-1.wav") and f"a:{ticket.ref}" in tokens
