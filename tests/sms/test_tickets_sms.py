"""Make-up claims and complaints by SMS, answered by ops: over TCP with the SMSC simulator.

A member files a claim (BD) and a complaint about an order (TS <order_no> ...), reads their
status (CX / 查询), ops resolve the claim with `loyalty tickets resolve --credit`, and the
member gets the outcome by SMS; the credit is one ledger entry however often ops resolve.
"""

from __future__ import annotations

import json
import re

import pytest_twisted

from core.accounts import balance, check_ledger, history
from core.cli import main as loyalty
from core.redemption import recent_orders
from tests.sms.channel_helpers import NOW, converse

ZHANG = "13800138000"  # zh, 9300 points, a shipped gift order
ALICE = "15800158000"  # en


def ops_at_channel_time(monkeypatch, database_url: str, ch) -> None:
    """`loyalty` on the channel's database, at the channel's (programme) time."""
    import core.cli

    monkeypatch.setenv("LOYALTY_DATABASE_URL", database_url)
    monkeypatch.setattr(core.cli.Context, "now", lambda self: ch.clock())


def ref_in(reply: str) -> str:
    m = re.search(r"((?:BD|TS)\d{12})", reply)
    assert m, reply
    return m.group(1)


@pytest_twisted.ensureDeferred
async def test_claim_resolved_with_credit_once_and_status_by_cx(channels, database_url,
                                                                 monkeypatch, capsys):
    ch = await channels().start()
    ops_at_channel_time(monkeypatch, database_url, ch)
    ref = ref_in(await converse(ch, ZHANG, "BD 10月话费积分未到账"))
    assert await converse(ch, ZHANG, f"CX {ref}") == (
        f"【积分补登】您的受理号{ref}正在处理中，处理结果将短信通知您。")
    before = ch.run(balance, ZHANG, NOW).points

    assert loyalty(["tickets", "list", "--open", "--kind", "claim", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [t["ref"] for t in listed] == [ref]

    sent = len(ch.sim.texts_to(ZHANG))
    assert loyalty(["tickets", "resolve", ref, "--outcome", "核实无误", "--credit", "300"]) == 0
    await ch.sim.wait_for(lambda: len(ch.sim.texts_to(ZHANG)) > sent, timeout=5)
    assert ch.sim.texts_to(ZHANG)[sent:] == [
        f"【积分补登】您的受理号{ref}已处理完毕：核实无误，已为您补登300积分。"]

    # Resolving again is refused and credits nothing.
    capsys.readouterr()
    assert loyalty(["tickets", "resolve", ref, "--outcome", "again", "--credit", "300"]) == 1
    assert "already resolved" in capsys.readouterr().err
    assert ch.run(balance, ZHANG, NOW).points == before + 300
    credits = [e for e in ch.run(history, ZHANG, NOW) if e.reason == "makeup"]
    assert [e.amount for e in credits] == [300]
    assert ch.run(check_ledger) == []
    assert [r["template"] for r in ch.outbox(ZHANG)].count("ticket_resolved") == 1

    assert await converse(ch, ZHANG, f"查询{ref}") == (
        f"【积分补登】您的受理号{ref}已处理完毕：核实无误，已为您补登300积分。")
    assert loyalty(["tickets", "show", ref]) == 0
    shown = capsys.readouterr().out
    assert "resolved" in shown and "credited   300 points" in shown


@pytest_twisted.ensureDeferred
async def test_cx_of_another_members_ticket_is_refused(channels):
    ch = await channels().start()
    ref = ref_in(await converse(ch, ZHANG, "BD 9月积分没到"))
    assert await converse(ch, ALICE, f"CX {ref}") == (
        f"Loyalty: no claim or complaint of yours has the reference {ref}. "
        "Check the reference in our earlier text.")
    assert await converse(ch, ALICE, "CX") == (
        "Loyalty: text CX+reference to see a claim or complaint, e.g. CX BD261120000001.")


@pytest_twisted.ensureDeferred
async def test_complaint_names_the_members_order_and_member_show_lists_it(
        channels, database_url, monkeypatch, capsys):
    ch = await channels().start()
    ops_at_channel_time(monkeypatch, database_url, ch)
    order_no = ch.run(recent_orders, ZHANG, limit=1)[0].order_no
    ref = ref_in(await converse(ch, ZHANG, f"TS {order_no} 礼品坏了"))
    assert loyalty(["member", "show", ZHANG, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [(t["ref"], t["kind"], t["order_no"]) for t in shown["tickets"]] == [
        (ref, "complaint", order_no)]
    # Someone else's order number is just text.
    other = ref_in(await converse(ch, ALICE, f"TS {order_no} hello"))
    assert loyalty(["tickets", "show", other, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["order_no"] is None
    # A complaint cannot be credited.
    assert loyalty(["tickets", "resolve", ref, "--outcome", "x", "--credit", "5"]) == 1
    assert "only a make-up claim" in capsys.readouterr().err
