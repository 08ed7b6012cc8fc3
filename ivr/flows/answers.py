"""Main-menu answers 1 (tier), 2 (balance), 3 (history) and 5 (gift delivery).

Tier, balance and the first history page come from the call's read-ahead snapshot
(``ivr.flows.lookahead``, read through the database thread while the welcome played); later
pages and gift orders are read when asked. Each answer is spoken (read-outs are skipped with #,
see ``speech.SKIP_KEY``) and ends with the SMS copy offer. Each returns the key the caller
pressed instead of taking the offer, to be used as the next main-menu choice (or None).

The SMS copies (``tier``, ``balance``, ``history`` with every entry heard, newest first, and
``delivery``) are built by ``core.messages``, as the SMS replies to the same questions are.
"""

from __future__ import annotations

from core import messages
from core.accounts import history
from core.config import CourierConfig
from core.domain import LedgerEntry, LedgerKind, Order
from core.redemption import gift_orders
from ivr.flows.menu import Call
from ivr.flows.names import courier_pieces
from ivr.flows.speech import SKIP_KEY, Alpha, Day, Digits, Num, Piece, Voice

GIFT_ORDERS_TOLD = 3
DELIVERY_STATUSES = ("pending", "shipped", "in_transit", "delivered", "returned", "cancelled")
LEDGER_KINDS = tuple(LedgerKind)


async def tier(call: Call) -> str | None:
    status = (await call.snapshot()).tier
    pieces: list[Piece] = ["tier_is", f"tier_{status.code}"]
    if status.valid_until is not None:
        pieces += ["tier_valid_until", Day(status.valid_until)]
    if status.next_code is not None:
        pieces += ["tier_need", Num(status.points_to_next), "tier_to_reach",
                   f"tier_{status.next_code}"]
    else:
        pieces.append("tier_top")
    await call.voice.play(*pieces, escape=SKIP_KEY)
    return await call.offer_sms(messages.tier_message(status, call.language))


async def points_balance(call: Call) -> str | None:
    bal = (await call.snapshot()).balance
    pieces: list[Piece] = ["bal_is", Num(bal.points), "unit_points"]
    if bal.next_expiry_date is not None and bal.next_expiry_points > 0:
        pieces += ["bal_of_which", Num(bal.next_expiry_points), "unit_points", "bal_expire_on",
                   Day(bal.next_expiry_date)]
    else:
        pieces.append("bal_none_expiring")
    await call.voice.play(*pieces, escape=SKIP_KEY)
    return await call.offer_sms(messages.balance_of(bal))


def ledger_kind_prompt(entry: LedgerEntry) -> str:
    if entry.kind == LedgerKind.CREDIT and entry.reason == "makeup":
        return "hist_kind_makeup"
    return f"hist_kind_{entry.kind}" if entry.kind in LEDGER_KINDS else "hist_kind_adjustment"


async def points_history(call: Call) -> str | None:
    """Pages of ``history_page`` entries, newest first: 1 more, * repeat the page; any other
    key (or none) goes on to the SMS offer."""
    page_size = call.settings.history_page
    heard: list[LedgerEntry] = []
    offset = 0
    page = (await call.snapshot()).history[: page_size + 1]
    if not page:
        await call.voice.play("hist_none", escape=SKIP_KEY)
        return None
    lead: list[Piece] = ["hist_latest"]
    while True:
        shown, more = page[:page_size], len(page) > page_size
        pieces = list(lead)
        for entry in shown:
            pieces += [Day(call.local_day(entry.created_at)), ledger_kind_prompt(entry),
                       Num(abs(entry.amount)), "unit_points"]
        await call.voice.play(*pieces, escape=SKIP_KEY)
        heard += [e for e in shown if e not in heard]
        lead = []
        if not more:
            await call.voice.play("hist_no_more", escape=SKIP_KEY)
            break
        key = await call.ask(("hist_more",))
        if key == "*":
            continue
        if key != "1":
            break
        offset += page_size
        call.info.detail("more")
        page = await _history_page(call, offset, page_size + 1)
        if not page:
            await call.voice.play("hist_no_more", escape=SKIP_KEY)
            break
    return await call.offer_sms(messages.history_message(heard, call.local_day))


async def _history_page(call: Call, offset: int, limit: int) -> list[LedgerEntry]:
    return await call.run(history, call.msisdn, call.now(), offset=offset, limit=limit,
                          write=False)


def order_pieces(order: Order, voice: Voice, couriers: tuple[CourierConfig, ...] = ()
                 ) -> list[Piece]:
    pieces: list[Piece] = ["dlv_order", Digits(order.order_no)]
    d = order.delivery
    status = d.status if d is not None else "pending"
    if status in DELIVERY_STATUSES:
        pieces += ["dlv_status", f"dlv_status_{status}"]
    if d is not None and d.courier:
        pieces += courier_pieces(voice, d.courier, couriers)
    if d is not None and d.tracking_no:
        pieces += ["dlv_tracking", Alpha(d.tracking_no)]
    return pieces


async def delivery(call: Call) -> str | None:
    """The latest gift orders one at a time: 1 next order, * repeat; then the SMS offer."""
    orders = await call.run(gift_orders, call.msisdn, call.now(), limit=GIFT_ORDERS_TOLD,
                            write=False)
    if not orders:
        await call.voice.play("dlv_none", escape=SKIP_KEY)
        return None
    lead: list[Piece] = ["dlv_latest"]
    i = 0
    while True:
        pieces = order_pieces(orders[i], call.voice, call.settings.couriers)
        await call.voice.play(*lead, *pieces, escape=SKIP_KEY)
        lead = []
        if i + 1 >= len(orders):
            break
        key = await call.ask(("dlv_next",))
        if key == "*":
            continue
        if key != "1":
            break
        i += 1
    # The reward codes stand for the names (the call has no names at hand).
    return await call.offer_sms(messages.delivery_message(orders[: i + 1], {}, call.language,
                                                          call.settings.couriers))
