"""The read-only SMS keywords of one MO batch answered from batched reads (database thread).

Balance, tier, history, catalogue and delivery are most of the SMS traffic. Asked member by
member, each reply costs several queries (the member again, then her lots, her ledger, the
catalogue and its prices, each order's delivery, each reward's name). Here the batch's senders
are read together: one query for the members (``members_by_msisdn``, done by the handler), one
for balances, one for the tier inputs (qualifying points), one for recent history, one for
gift orders with their deliveries, and the catalogue with its prices once. The replies are
built with the same pure functions the use cases use (``core.accounts.tier_of``,
``core.redemption.priced_catalogue``), so they are the per-member answers
(``tests/sms/test_batched_reads.py`` compares them). A member whose figures the batched read
leaves out (an account needing attention) is answered by the per-member use case, which says
why.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from core import messages
from core.accounts import qualifying_points_since, tier_of
from core.domain import LedgerEntry, Member, Order, Reward, RewardKind
from core.messages import Message
from core.messaging import keywords as kw
from core.redemption import priced_catalogue
from core.rules import last_valid_day

# The keywords answered from batched reads (help and unknown need no reads at all).
BATCHED = (kw.BALANCE, kw.TIER, kw.HISTORY, kw.CATALOGUE, kw.DELIVERY)
_TIERED = (kw.TIER, kw.CATALOGUE)  # the catalogue is priced for the member's tier


@dataclass
class BatchReads:
    """What the batch's read-only messages need, read once for all their senders."""

    members: Mapping[str, Member] = field(default_factory=dict)
    balances: dict[str, tuple[int, datetime | None, int]] = field(default_factory=dict)
    qualifying: dict[str, int] = field(default_factory=dict)
    histories: dict[str, list[LedgerEntry]] = field(default_factory=dict)
    gift_orders: dict[str, list[Order]] = field(default_factory=dict)
    rewards: list[Reward] | None = None  # the whole catalogue, in catalogue order
    names: dict[str, Reward] = field(default_factory=dict)  # reward code -> reward
    # The catalogue reply by (tier, language): the same for every such member of the batch
    # (one Message, so the handler renders it once; see ``core.messaging.handling``).
    catalogues: dict[tuple[str, str], Message] = field(default_factory=dict)


def read_batch(uow, rules, members: Mapping[str, Member],
               wanted: Iterable[tuple[str, str]], now: datetime, *, history_entries: int,
               delivery_orders: int) -> BatchReads:
    """Read what ``wanted`` (msisdn, command kind) pairs of members need, one query per fact."""
    by_kind: dict[str, list[str]] = {}
    for msisdn, kind in wanted:
        if kind in BATCHED and msisdn in members:
            by_kind.setdefault(kind, []).append(msisdn)
    reads = BatchReads(members)
    if not by_kind:
        return reads
    q = uow.messaging
    if kw.BALANCE in by_kind:
        reads.balances = q.balance_summaries(by_kind[kw.BALANCE], now)
    tiered = [m for k in _TIERED for m in by_kind.get(k, ())]
    if tiered:
        since, sources = qualifying_points_since(rules, rules.today(now))
        reads.qualifying = q.earned_points_by_member(tiered, since, sources)
    if kw.HISTORY in by_kind:
        reads.histories = q.recent_history(by_kind[kw.HISTORY], history_entries)
    if kw.DELIVERY in by_kind:
        reads.gift_orders = q.recent_orders(by_kind[kw.DELIVERY], delivery_orders,
                                            RewardKind.GIFT)
    if kw.CATALOGUE in by_kind or any(reads.gift_orders.values()):
        reads.rewards = q.catalogue_rewards()
        reads.names = {r.code: r for r in reads.rewards}
    return reads


def batched_answer(reads: BatchReads, rules, cmd: kw.Command, msisdn: str, lang: str,
                   now: datetime, catalogue_entries: int) -> Message | None:
    """The reply to a read-only keyword from the batch's reads; None when they do not hold
    the member's figures (she is then answered by the per-member use case)."""
    member = reads.members.get(msisdn)
    if member is None:
        return None
    kind = cmd.kind
    if kind == kw.BALANCE:
        summary = reads.balances.get(msisdn)
        if summary is None:
            return None
        points, next_expiry, expiring = summary
        day = last_valid_day(next_expiry, rules.zone) if next_expiry else None
        return messages.balance_message(points, expiring, day)
    if kind in _TIERED:
        qualifying = reads.qualifying.get(msisdn)
        if qualifying is None:
            return None
        today = rules.today(now)
        status = tier_of(rules, member, qualifying, today)
        if kind == kw.TIER:
            return messages.tier_message(status, lang)
        if reads.rewards is None:
            return None
        message = reads.catalogues.get((status.code, lang))
        if message is None:
            message = reads.catalogues[(status.code, lang)] = messages.catalogue_message(
                priced_catalogue(reads.rewards, status.code, today), lang, catalogue_entries)
        return message
    if kind == kw.HISTORY:
        entries = reads.histories.get(msisdn)
        return None if entries is None else messages.history_message(entries, rules.today)
    if kind == kw.DELIVERY:
        orders = reads.gift_orders.get(msisdn)
        if orders is None:
            return None
        names = {}
        for o in orders:
            r = reads.names.get(o.reward_code)
            names[o.reward_code] = r.name(lang) if r else o.reward_code
        return messages.delivery_message(orders, names, lang, rules.couriers)
    return None
