"""Monthly automatic redemption: each active subscription redeems through the channels' use case.

The request id ``auto:<subscription id>:<YYYY-MM>`` makes the month's redemption happen at most
once, however often the run is repeated or resumed; the notice's dedupe key does the same for
the SMS. Each deduction is in the ledger (channel ``job``, the order's request id says which
subscription and month) and is reported as an event for the log.
"""

from __future__ import annotations

from datetime import datetime

from core.config import JobsConfig
from core.domain import Channel, DomainError, InsufficientPoints
from core.jobs.base import Sample, Step, add, masked, queue_notice
from core.messages import auto_redeem_done_message, auto_redeem_short_message
from core.ports import UnitOfWork
from core.redemption import quote_redemption, redeem
from core.rules import ProgrammeRules

BATCH = 200
KIND = "auto_redeem"


def request_id(subscription_id: int, month: str) -> str:
    return f"auto:{subscription_id}:{month}"


def auto_redeem(uow: UnitOfWork, rules: ProgrammeRules, now: datetime, config: JobsConfig,
                cursor: str | None = None, *, dry_run: bool = False, samples: int = 0,
                batch: int = BATCH) -> Step:
    month = f"{rules.today(now):%Y-%m}"
    subs = uow.jobs.active_auto_redemptions(int(cursor or 0), batch)
    counts: dict[str, int] = {"subscriptions": len(subs)}
    picked: list[Sample] = []
    events: list[dict] = []
    rewards: dict = {}  # a batch names few rewards: each is read once, for its names
    for sub in subs:
        rid = request_id(sub.id, month)
        if uow.orders.order_by_request(sub.msisdn, Channel.JOB, rid) is not None:
            # Done this month (the notice went in the same transaction as the order).
            add(counts, "already_redeemed")
            continue
        if sub.reward_code not in rewards:
            rewards[sub.reward_code] = uow.orders.get_reward(sub.reward_code)
        reward = rewards[sub.reward_code]
        member = uow.members.get_member(sub.msisdn)
        language = member.language if member else rules.programme.default_language
        try:
            if dry_run:
                quote = quote_redemption(uow, rules, sub.msisdn, sub.reward_code, now)
                message = auto_redeem_done_message(reward, sub.reward_code, language,
                                                   quote.price, quote.balance_after, "-")
                add(counts, "redeemed")
                add(counts, "points", quote.price)
            else:
                # A refused redemption must leave nothing of itself in the batch.
                with uow.savepoint():
                    order = redeem(uow, rules, sub.msisdn, sub.reward_code, Channel.JOB, rid,
                                   now)
                balance, _, _ = uow.members.balance_summary(order.msisdn, now)
                message = auto_redeem_done_message(reward, sub.reward_code, language,
                                                   order.points, balance, order.order_no)
                add(counts, "redeemed")
                add(counts, "points", order.points)
                events.append(dict(subscription=sub.id, msisdn=masked(order.msisdn),
                                   reward=order.reward_code, points=order.points,
                                   order_no=order.order_no, month=month))
        except InsufficientPoints as short:
            message = auto_redeem_short_message(reward, sub.reward_code, language, short.price,
                                                short.balance)
            add(counts, "short")
        except DomainError as refused:
            add(counts, refused.code)
            events.append(dict(subscription=sub.id, msisdn=masked(sub.msisdn),
                               reward=sub.reward_code, refused=refused.code, month=month))
            continue
        if len(picked) < samples:
            picked.append(Sample(sub.msisdn, language, message.template, message.params))
        if not dry_run:
            queue_notice(uow, rules, config, sub.msisdn, now, kind=KIND,
                         template=message.template, params=message.params,
                         dedupe_key=f"{rid}:{message.template}")
    next_cursor = str(subs[-1].id) if len(subs) >= batch else None
    return Step(next_cursor, counts, tuple(picked), tuple(events))
