"""Main-menu 4: redeem points.

Category (1 services, 2 gifts, 3 vouchers, * back) -> the category's items in catalogue order
with the caller's tier price (1-8 choose, 9 more, * back) -> a quote (every rule checked, nothing
spent) -> the service PIN ended by # -> read-back, 1 confirm / 2 cancel -> the redemption.

Hang-up safety: nothing is written before the confirmation key but PIN tries. The redemption
runs only once the caller pressed 1, with ``request_id = "<uniqueid>:<n>:<reward code>"``
(``n``: this call's n-th redemption) under the caller's own number, so a replay of that
confirmation can never debit twice, a second confirmed redemption in the same call is a new
order, and another caller whose call has the same uniqueid (Asterisk boxes without
``systemname``) is never given this caller's order. The SMS confirmation is queued in the same
transaction, before anything is spoken, so a caller hanging up on the order number (or a
server killed right after the debit) still gets the SMS.
"""

from __future__ import annotations

from core.domain import (
    FULFILLED_KINDS,
    AddressNeeded,
    Channel,
    DomainError,
    InsufficientPoints,
    LimitReached,
    LineBarred,
    OutOfStock,
    PricedReward,
    RewardKind,
    RewardUnavailable,
    UnknownReward,
)
from core.lines import redeem_allowed
from core.messages import redeem_done_message
from core.ports import UnitOfWork
from core.redemption import catalogue, quote_redemption, redeem
from core.service_desk import queue_sms
from ivr.flows.auth import enter_pin
from ivr.flows.menu import Call, ToAgent
from ivr.flows.names import reward_name
from ivr.flows.speech import NO_KEYS, SKIP_KEY, Digits, Num, Piece

CATEGORIES = {"1": RewardKind.SERVICE, "2": RewardKind.GIFT, "3": RewardKind.VOUCHER}
PAGE_SIZE = 8
MORE_KEY = "9"
REDEEM_SMS_KIND = "redeem"

REFUSAL_PROMPTS: tuple[tuple[type[DomainError], str], ...] = (
    (InsufficientPoints, "redeem_insufficient"),
    (OutOfStock, "redeem_out_of_stock"),
    (LimitReached, "redeem_limit_reached"),
    (RewardUnavailable, "redeem_not_available"),
    (UnknownReward, "redeem_not_available"),
    (AddressNeeded, "redeem_address_needed"),
)


def refusal_prompt(error: DomainError) -> str | None:
    for kind, prompt in REFUSAL_PROMPTS:
        if isinstance(error, kind):
            return prompt
    return None


async def redeem_menu(call: Call) -> None:
    """Categories until the caller redeems, cancels or goes back (*). A line that may not
    redeem (suspended, arrears) is told so and goes back to the main menu."""
    try:
        await call.run(redeem_allowed, call.msisdn, call.now(), write=False)
    except LineBarred as barred:
        call.info.detail(barred.code)
        await call.voice.play("redeem_line_barred", escape=SKIP_KEY)
        return
    while True:
        item = await choose_reward(call, in_stock_only=True)
        if item is None:
            return
        call.info.detail(item.reward.code)
        if await redeem_item(call, item):
            return


async def choose_reward(call: Call, *, in_stock_only: bool) -> PricedReward | None:
    """A category (1-3), then an item of it, until the caller picks one; None on * (back).
    The redeem menu offers what is in stock; the monthly automatic redemption (menu 7) any
    item, since stock is checked when it runs."""
    while True:
        key = await call.choose(["redeem_categories"], "123*0")
        if key == "*":
            return None
        if key == "0":
            raise ToAgent("key 0")
        items = await call.run(catalogue, call.msisdn, call.now(), kind=CATEGORIES[key],
                               write=False)
        if in_stock_only:
            items = [item for item in items if item.in_stock]
        if not items:
            await call.voice.play("redeem_category_empty", escape=SKIP_KEY)
            continue
        item = await pick_item(call, items)
        if item is not None:
            return item


async def pick_item(call: Call, items: list[PricedReward]) -> PricedReward | None:
    """1-8 choose on this page, 9 next page, * back (None)."""
    start = 0
    while True:
        page = items[start:start + PAGE_SIZE]
        more = start + PAGE_SIZE < len(items)
        pieces: list[Piece] = []
        for n, item in enumerate(page, start=1):
            pieces += ["redeem_item", Num(n), reward_name(call.voice, item.reward.code),
                       "redeem_costs",
                       Num(item.price), "unit_points"]
        if more:
            pieces.append("redeem_more")
        pieces.append("redeem_choose")
        valid = "".join(str(n) for n in range(1, len(page) + 1)) + (MORE_KEY if more else "")
        key = await call.choose(pieces, valid + "*0")
        if key == "*":
            return None
        if key == "0":
            raise ToAgent("key 0")
        if key == MORE_KEY and more:
            start += PAGE_SIZE
            continue
        return page[int(key) - 1]


async def redeem_item(call: Call, item: PricedReward) -> bool:
    """Quote, PIN, read-back, redeem. False sends the caller back to the categories (the
    rules refused this item); True back to the main menu."""
    code = item.reward.code
    try:
        quote = await call.run(quote_redemption, call.msisdn, code, call.now(), write=False)
    except DomainError as refused:
        return not await _refused(call, refused)
    if not await enter_pin(call, "redeem_enter_pin"):
        return True  # PIN locked (told); the member can still use the other menus
    readout: list[Piece] = ["redeem_confirm_intro", reward_name(call.voice, code),
                            "redeem_confirm_for",
                            Num(quote.price)]
    while True:
        key = await call.choose(["redeem_confirm_keys"], "12*0", readout=readout)
        if key == "*":
            continue
        if key == "0":
            call.info.detail("cancel")
            raise ToAgent("key 0")
        if key == "2":
            call.info.detail("cancel")
            await call.voice.play("redeem_cancelled", escape=SKIP_KEY)
            return True
        break
    call.info.detail("confirm")
    # Counted only once an order exists: after a refusal (nothing written) or a lost reply
    # (maybe written) the next confirmation reuses the number, so it can only find that order.
    request_id = f"{call.channel.uniqueid}:{call.redeemed + 1}:{code}"
    try:
        order = await call.run(redeem_with_sms, call.msisdn, code, Channel.IVR, request_id,
                               call.now(), reward_name=item.reward.name(call.language),
                               language=call.language)
    except DomainError as refused:
        call.info.detail(refused.code)
        return not await _refused(call, refused)
    call.redeemed += 1
    call.forget()
    if call.metrics is not None:
        call.metrics.redemptions.labels(channel=Channel.IVR.value).inc()
    if order.reward_kind in FULFILLED_KINDS:
        # Applied later by the provisioning API: say so honestly; its SMS tells the outcome.
        await call.voice.play("redeem_accepted", Digits(order.order_no), "redeem_applying_sms",
                              escape=SKIP_KEY)
    else:
        gift = ["redeem_gift_address"] if order.reward_kind == RewardKind.GIFT else []
        await call.voice.play("redeem_success", Digits(order.order_no), *gift,
                              "redeem_sms_sent", escape=SKIP_KEY)
    return True


async def _refused(call: Call, error: DomainError) -> bool:
    """Tell the caller why; True when it was a rule about this item (back to categories)."""
    if isinstance(error, LineBarred):  # barred since the menu was entered: to the main menu
        await call.voice.play("redeem_line_barred", escape=NO_KEYS)
        return False
    prompt = refusal_prompt(error)
    await call.voice.play(prompt or "err_system", escape=NO_KEYS)
    return prompt is not None


def redeem_with_sms(uow: UnitOfWork, rules, msisdn: str, code: str, channel: str, request_id: str,
                    now, *, reward_name: str, language: str):
    """``redeem`` and its SMS confirmation in one transaction: an order never exists without
    its SMS, whatever happens to this process after the commit. A replayed request returns
    the same order and queues nothing more (the SMS's dedupe key is the order number)."""
    order = redeem(uow, rules, msisdn, code, channel, request_id, now)
    after, _, _ = uow.members.balance_summary(order.msisdn, now)
    message = redeem_done_message(order, reward_name, after)
    queue_sms(uow, rules, order.msisdn, now, kind=REDEEM_SMS_KIND, template=message.template,
              params=message.params, language=language,
              dedupe_key=f"redeem_done:{order.order_no}")
    return order
