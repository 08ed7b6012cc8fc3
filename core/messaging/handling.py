"""Handling stored MO messages (database thread; the use cases): keyword -> core -> reply.

A round takes ``received`` rows in id order (PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so several
processes share the work), handles the messages that only read in one transaction and each
that writes in its own (see ``handle_batch``), and marks each row ``handled`` in the same
transaction that queues its reply in the outbox: an MO stored before a crash is handled after
the restart, and never twice. Use cases that write (redeem, confirm, tickets, opt-out) run in
a SAVEPOINT each (``uow.savepoint()``), so a domain error undoes only that message's work (a
wrong confirmation code is a returned refusal, not an error: its failure count is kept). An
unexpected error rolls the batch back and the batch is handled one message per transaction;
a message that still fails is tried again later and, after a few tries, set aside with one
"temporarily unavailable" reply (see ``core.messaging.set_aside``, also for repeats).

Each message's keyword is parsed once, when the round is claimed. The reply's text comes from
``render`` (the SMS channel's templates, fitted to its part limit), given by the caller.

Per-number rate limit (``smpp.mo_rate_limit`` per minute, fixed windows from the first
message): the first message over the limit gets one polite reply, the rest of that minute none.

This module drives a round in steps: it commits (or rolls back) between the steps itself.
"""

from __future__ import annotations

import traceback
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from core import messages
from core.domain import InvalidMsisdn, mask_msisdn
from core.messages import Message
from core.messaging import keywords as kw
from core.messaging.reading import BatchReads, read_batch
from core.messaging.records import OutboxRow, RateWindow, StoredMO
from core.messaging.replies import WRITERS, dispatch
from core.messaging.set_aside import (
    WAIT_FOR_FIRST,
    backoff,
    copied_reply,
    describe,
    repeat_reply,
    reply_row,
)
from core.messaging.storing import DEDUPE_WINDOW_S

REPLY_KIND = "reply"
RATE_WINDOW = timedelta(minutes=1)

Render = Callable[[Message, str], str]  # (message, language) -> the text to send


@dataclass(frozen=True)
class HandlerSettings:
    rate_limit: int = 10  # MO per number per minute; 0: no limit
    dedupe_window_s: float = DEDUPE_WINDOW_S
    max_parts: int = 3
    default_language: str = "zh"
    history_entries: int = 5
    catalogue_entries: int = 12
    delivery_orders: int = 3
    max_attempts: int = 4  # handling attempts of one message before it is set aside
    retry_base_s: float = 2.0  # backoff after the n-th failure: base * 2**(n-1)
    # Only messages from this source stored after message ``after_id`` (a simulation must
    # leave the real queue alone).
    only_from: str | None = None
    after_id: int = 0


@dataclass(frozen=True)
class HandledBatch:
    count: int = 0  # MO rows taken (handled or failed)
    outcomes: dict[str, int] = field(default_factory=dict)
    redemptions: int = 0
    claimed: tuple[OutboxRow, ...] = ()  # replies inserted already claimed by this process
    queued: int = 0  # replies queued for any sender
    # What went wrong, logged by the reactor side (nothing Twisted runs on the pool thread).
    problems: tuple[str, ...] = ()
    out_of_plan: tuple[str, ...] = ()  # masked senders outside the numbering plan


@dataclass(frozen=True)
class _Round:
    settings: HandlerSettings
    now: datetime
    claim_until: datetime | None  # replies inserted claimed by this process until then
    render: Render
    # Texts rendered in this round by (id of the Message, language) -> (Message, text): a
    # Message given to several members (a constant reply, a tier's catalogue) is rendered
    # once. The Message is kept with its text, so its id is not reused during the round.
    texts: dict[tuple[int, str], tuple[Message, str]] = field(default_factory=dict)


@dataclass
class Work:
    """What one transaction of a round found out (read by ``core.messaging.replies``)."""

    settings: HandlerSettings
    now: datetime
    outcomes: Counter = field(default_factory=Counter)
    redemptions: int = 0
    problems: list[str] = field(default_factory=list)
    out_of_plan: list[str] = field(default_factory=list)
    # What the batch's read-only keywords need, read once for all their senders.
    reads: BatchReads = field(default_factory=BatchReads)


def handle_batch(uow, rules, settings: HandlerSettings, now: datetime, limit: int,
                 claim_until: datetime | None, render: Render) -> HandledBatch:
    """Handle up to ``limit`` received MO messages: those that only read in one transaction,
    each that writes (redeem, confirm, tickets, opt-out) in its own, after them.

    A writer inside the batch's transaction would keep the rows it locked (a reward's stock)
    while a later message of the batch waits for a member row, which a hotline redemption may
    hold while it waits for that stock: a deadlock on PostgreSQL. On its own, a writer locks
    member then reward, as every redemption does."""
    rnd = _Round(settings, now, claim_until, render)
    mos = uow.messaging.claim_mo(limit, now, only_from=settings.only_from,
                                 after_id=settings.after_id)
    if not mos:
        return HandledBatch()
    commands = {mo.id: kw.parse(mo.text) for mo in mos}
    readers = [mo for mo in mos if commands[mo.id].kind not in WRITERS]
    results = []
    if readers:
        results.append(_handle_together(uow, rules, rnd, readers, commands))
    else:
        uow.rollback()  # let go of the claim: each writer is claimed again on its own
    results += [_handle_one(uow, rules, rnd, mo.id, commands)
                for mo in mos if commands[mo.id].kind in WRITERS]
    return _merged(results)


def handle_one(uow, rules, settings: HandlerSettings, mo_id: int, now: datetime,
               claim_until: datetime | None, render: Render) -> HandledBatch:
    """Handle one message in its own transaction; if that fails, count the attempt and try
    again after a backoff, or set the message aside after ``max_attempts``."""
    return _handle_one(uow, rules, _Round(settings, now, claim_until, render), mo_id, {})


def _attempt(uow, rules, rnd: _Round, mos: list[StoredMO],
             commands: Mapping[int, kw.Command]) -> HandledBatch | Exception:
    """``_handle``, or the exception that made it roll back (a lost connection goes on)."""
    try:
        return _handle(uow, rules, rnd, mos, commands)
    except Exception as exc:
        uow.rollback()
        if uow.messaging.connection_lost(exc):
            raise
        return exc


def _handle_together(uow, rules, rnd: _Round, mos: list[StoredMO],
                     commands: Mapping[int, kw.Command]) -> HandledBatch:
    """Claimed messages in one transaction, or one by one if that fails."""
    result = _attempt(uow, rules, rnd, mos, commands)
    if isinstance(result, HandledBatch):
        return result
    problem = f"MO batch of {len(mos)} failed ({describe(result)}); handling them one by one"
    merged = _merged([_handle_one(uow, rules, rnd, mo.id, commands) for mo in mos])
    return replace(merged, problems=(problem, *merged.problems))


def _merged(results: list[HandledBatch]) -> HandledBatch:
    if len(results) == 1:
        return results[0]
    return HandledBatch(
        count=sum(r.count for r in results),
        outcomes=dict(sum((Counter(r.outcomes) for r in results), Counter())),
        redemptions=sum(r.redemptions for r in results),
        claimed=tuple(row for r in results for row in r.claimed),
        queued=sum(r.queued for r in results),
        problems=tuple(p for r in results for p in r.problems),
        out_of_plan=tuple(s for r in results for s in r.out_of_plan))


def _handle_one(uow, rules, rnd: _Round, mo_id: int,
                commands: Mapping[int, kw.Command]) -> HandledBatch:
    mos = uow.messaging.claim_mo_ids([mo_id])
    if not mos:
        return HandledBatch()
    result = _attempt(uow, rules, rnd, mos, commands)
    if isinstance(result, HandledBatch):
        return result
    error = describe(result)
    trace = "".join(traceback.format_exception(result))
    mos = uow.messaging.claim_mo_ids([mo_id])
    if not mos:
        return HandledBatch()
    mo, settings, now = mos[0], rnd.settings, rnd.now
    attempts = mo.attempts + 1
    who = f"MO {mo_id} from {mask_msisdn(mo.msisdn)}"
    if attempts < settings.max_attempts:
        delay = backoff(attempts, settings.retry_base_s)
        uow.messaging.mo_retry_later(mo_id, attempts, now + delay, error)
        uow.commit()
        return HandledBatch(1, {"retry": 1}, problems=(
            f"{who} failed (attempt {attempts} of {settings.max_attempts}), trying again in "
            f"{delay.total_seconds():g}s: {error}",))
    work = Work(settings, now)
    work.outcomes["set_aside"] += 1
    work.problems.append(f"{who} failed {attempts} times; set aside (loyalty queues list):\n"
                         + trace)
    rows = []
    msisdn = _msisdn(mo.msisdn, rules)
    if msisdn is not None:
        lang = uow.messaging.member_languages([msisdn]).get(msisdn, settings.default_language)
        rows.append(_reply_row(rnd, msisdn, lang, messages.UNAVAILABLE, mo))
    uow.messaging.mo_set_aside(mo_id, attempts, error, now)
    return _finish(uow, rnd, [], [], rows, work, count=1)


def _msisdn(source: str, rules) -> str | None:
    """The sender's national number; None outside the numbering plan (not served: no reply)."""
    try:
        return rules.numbering.normalise(source)
    except InvalidMsisdn:
        return None


def _handle(uow, rules, rnd: _Round, mos: list[StoredMO],
            commands: Mapping[int, kw.Command]) -> HandledBatch:
    settings, now = rnd.settings, rnd.now
    work = Work(settings, now)
    numbers = {mo.id: _msisdn(mo.msisdn, rules) for mo in mos}
    found = uow.messaging.members_by_msisdn([n for n in numbers.values() if n])
    languages = {m: member.language for m, member in found.items()}
    windows = uow.messaging.rate_windows([numbers[m.id] or m.msisdn for m in mos]) \
        if settings.rate_limit else {}
    changed: dict[str, RateWindow] = {}
    rows: list[dict[str, Any]] = []
    waiting: set[int] = set()
    members = {mo.id: commands.get(mo.id) or kw.parse(mo.text) for mo in mos
               if numbers[mo.id] in languages}
    work.reads = read_batch(uow, rules, found, [(numbers[i], c.kind) for i, c in members.items()],
                            now, history_entries=settings.history_entries,
                            delivery_orders=settings.delivery_orders)
    for mo in mos:
        msisdn = numbers[mo.id]
        verdict = "ok"
        if settings.rate_limit:
            verdict = _rate(windows, changed, msisdn or mo.msisdn, mo.received_at,
                            settings.rate_limit)
        if verdict == "quiet":
            work.outcomes["rate_limited"] += 1
            continue
        if msisdn is None:
            work.outcomes["invalid_source"] += 1
            work.out_of_plan.append(mask_msisdn(mo.msisdn))
            continue
        lang = languages.get(msisdn, settings.default_language)
        if verdict == "warn":
            work.outcomes["rate_limited"] += 1
            message = messages.RATE_LIMITED
        elif msisdn not in languages:
            work.outcomes["not_member"] += 1
            message = messages.JOIN
        else:
            cmd = members[mo.id]
            if mo.repeat_of is not None and cmd.kind in WRITERS:
                how, reply = repeat_reply(uow, mo)
                if how == "wait":  # the first copy is handled first: answer like it
                    uow.messaging.mo_retry_later(mo.id, mo.attempts, now + WAIT_FOR_FIRST, None)
                    waiting.add(mo.id)
                    continue
                if how == "copy" and reply is not None:
                    work.outcomes["repeat"] += 1
                    rows.append(copied_reply(reply, mo, now, rnd.claim_until)[1])
                    continue
            work.outcomes[cmd.kind] += 1
            message = dispatch(uow, rules, work, cmd, msisdn, lang)
        rows.append(_reply_row(rnd, msisdn, lang, message, mo))
    done = [mo for mo in mos if mo.id not in waiting]
    return _finish(uow, rnd, done, ["handled"] * len(done), rows, work, count=len(mos),
                   windows=list(changed.values()))


def _finish(uow, rnd: _Round, mos: list[StoredMO], states: list[str],
            rows: list[dict[str, Any]], work: Work, count: int | None = None,
            windows: list[RateWindow] | None = None) -> HandledBatch:
    # The rate windows, the replies and the MO states: one statement on PostgreSQL.
    ids = uow.messaging.finish_handling(
        windows or [], rows, [(mo.id, s) for mo, s in zip(mos, states, strict=True)], work.now)
    uow.commit()
    claimed: tuple[OutboxRow, ...] = ()
    if rnd.claim_until is not None:
        claimed = tuple(OutboxRow(i, r["msisdn"], r["language"], r["template"], r["params"],
                                  r["body"], r["kind"], 1, ()) for i, r in zip(ids, rows,
                                                                                 strict=True))
    return HandledBatch(len(mos) if count is None else count, dict(work.outcomes),
                        work.redemptions, claimed,
                        0 if rnd.claim_until is not None else len(rows), tuple(work.problems),
                        tuple(work.out_of_plan))


def _rate(windows: dict[str, RateWindow], changed: dict[str, RateWindow], key: str,
          at: datetime, limit: int) -> str:
    # RateWindow(...) rather than dataclasses.replace: a third of the cost, once per MO.
    w = windows.get(key)
    if w is None or at - w.window_start >= RATE_WINDOW or at < w.window_start:
        w = RateWindow(key, at, 1, False)
    else:
        w = RateWindow(w.msisdn, w.window_start, w.count + 1, w.warned)
    verdict = "ok"
    if w.count > limit:
        verdict = "quiet" if w.warned else "warn"
        w = RateWindow(w.msisdn, w.window_start, w.count, True)
    windows[key] = changed[key] = w
    return verdict


def _reply_row(rnd: _Round, msisdn: str, lang: str, message: Message,
               mo: StoredMO) -> dict[str, Any]:
    rendered = rnd.texts.get((id(message), lang))
    if rendered is None:
        rendered = rnd.texts[(id(message), lang)] = (message, rnd.render(message, lang))
    return reply_row(msisdn, lang, REPLY_KIND, message, rendered[1], mo, rnd.now,
                     rnd.claim_until)
