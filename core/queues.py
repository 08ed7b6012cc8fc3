"""``loyalty queues``: what the queues set aside, and putting it back or giving it up.

    loyalty queues list [--json]     MO messages, MT messages and job items set aside
    loyalty queues retry ITEM        back in its queue, due now, attempts counted afresh
    loyalty queues discard ITEM      given up for good (kept as ``discarded``)

ITEM is ``mo:<id>``, ``mt:<id>`` or ``job:<id>`` as listed. A job item retried is taken off the
list; the job's next run (or ``loyalty jobs run NAME --force``) processes that member again,
which is safe: every job's writes are idempotent.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.ports import SetAsideRecord, UnitOfWork

QUEUES = ("mo", "mt", "job")


def parse_item(text: str) -> tuple[str, int]:
    """``mo:12`` -> ("mo", 12); ValueError when it is not an item name."""
    queue, _, number = text.partition(":")
    if queue not in QUEUES or not number.isdigit():
        raise ValueError(f"{text!r}: expected mo:ID, mt:ID or job:ID (see loyalty queues list)")
    return queue, int(number)


def set_aside_counts(uow: UnitOfWork, rules) -> dict[str, int]:
    """How many items each queue has set aside (the ``loyalty_set_aside`` gauge)."""
    return uow.set_aside_counts()


@dataclass(frozen=True)
class OutboxBacklog:
    depth: int  # MT rows not yet accepted by the SMSC
    oldest_at: datetime | None  # when the oldest of them was queued
    oldest_age_s: float | None


def outbox_backlog(uow: UnitOfWork, rules, now: datetime) -> OutboxBacklog:
    """How many MT messages wait, and for how long the oldest has waited."""
    oldest = uow.messaging.oldest_open_outbox()
    age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else None
    return OutboxBacklog(uow.messaging.outbox_depth(), oldest, age)


def list_set_aside(uow: UnitOfWork, rules) -> list[SetAsideRecord]:
    return list(uow.set_aside_items())


def retry_item(uow: UnitOfWork, rules, item: str, now: datetime) -> str | None:
    """Put an item back; returns what to tell ops, None when there is no such item."""
    queue, item_id = parse_item(item)
    job = uow.jobs.set_aside_job_item(item_id) if queue == "job" else None
    if not uow.release_set_aside(queue, item_id, now):
        return None  # nothing matched: nothing was written
    if job is not None:
        name, run_key, member = job
        return (f"{item}: off the list; the next {name} run processes it again "
                f"(now: loyalty jobs run {name} --force)")
    return f"{item}: back in the queue"


def discard_item(uow: UnitOfWork, rules, item: str, now: datetime) -> bool:
    queue, item_id = parse_item(item)
    return uow.discard_set_aside(queue, item_id, now)


# --- the command ---------------------------------------------------------------------------


def register(subparsers) -> None:
    queues = subparsers.add_parser("queues", help="messages and job items set aside",
                                   description=__doc__).add_subparsers(
        dest="queues_command", required=True)
    show = queues.add_parser("list", help="list what is set aside")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=cmd_list)
    retry = queues.add_parser("retry", help="put an item back in its queue")
    retry.add_argument("item", help="mo:ID, mt:ID or job:ID")
    retry.set_defaults(func=cmd_retry)
    discard = queues.add_parser("discard", help="give an item up for good")
    discard.add_argument("item", help="mo:ID, mt:ID or job:ID")
    discard.set_defaults(func=cmd_discard)


def cmd_list(ctx: Any) -> int:
    from core.cli import to_jsonable
    from core.domain import mask_msisdn

    items = ctx.run(list_set_aside, write=False)
    if ctx.args.json:
        print(json.dumps(to_jsonable(items), ensure_ascii=False, indent=2))
        return 0
    for i in items:
        who = mask_msisdn(i.msisdn) if i.msisdn.isdigit() else i.msisdn
        when = f"{i.at:%Y-%m-%d %H:%M}" if i.at else "-"
        print(f"{i.item:<10} {who:<14} {when:<16} {i.attempts:>2}x  {i.what[:30]!r}  "
              f"{i.error or ''}")
    print(f"{len(items)} set aside")
    return 0


def _checked(ctx: Any) -> str | None:
    try:
        parse_item(ctx.args.item)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return None
    return ctx.args.item


def cmd_retry(ctx: Any) -> int:
    item = _checked(ctx)
    if item is None:
        return 2
    said = ctx.run(retry_item, item, ctx.now())
    if said is None:
        print(f"{item}: nothing set aside under that name", file=sys.stderr)
        return 1
    print(said)
    return 0


def cmd_discard(ctx: Any) -> int:
    item = _checked(ctx)
    if item is None:
        return 2
    if not ctx.run(discard_item, item, ctx.now()):
        print(f"{item}: nothing set aside under that name", file=sys.stderr)
        return 1
    print(f"{item}: discarded")
    return 0
