"""MO messages: stored before they are acknowledged, then handled: keyword -> core -> reply.

Storing (``on_deliver``). Every deliver_sm is written to ``mo_messages`` (dedupe key: source +
the PDU's content hash, so a redelivered MO is stored, and acted on, once) in a group commit
with the others of the same moment, and only then answered with status 0; when the database
fails the answer is 0x58 (throttled) and the SMSC redelivers later.

Concatenated messages. The session reassembles parts in memory and calls back per part. Each
part is stored in ``mo_parts`` before its ack; the part that completes a set (in memory, or in
the database when a restart lost the earlier parts from memory) also stores the whole message.
So an acknowledged part is never lost, and a set whose parts straddle a restart is still joined.

Handling. A loop takes ``received`` rows in id order (PostgreSQL: ``FOR UPDATE SKIP LOCKED``,
so several processes share the work), handles the messages that only read in one transaction
and each that writes in its own (see ``handle_batch``), and marks each row ``handled`` in the
same transaction that queues its reply in the outbox: an MO stored before a crash is handled
after the restart, and never twice. Use cases that write (redeem, confirm, tickets, opt-out)
run in a SAVEPOINT each (``uow.savepoint()``), so a domain error undoes only that message's
work (a wrong confirmation code is a returned refusal, not an error: its failure count is
kept). An unexpected error rolls the batch back and the batch is handled one message
per transaction; a message that still fails is tried again later and, after a few tries, set
aside with one "temporarily unavailable" reply (see ``sms.set_aside``, also for repeats).

Per-number rate limit (``smpp.mo_rate_limit`` per minute, fixed windows from the first
message): the first message over the limit gets one polite reply, the rest of that minute none.
"""

from __future__ import annotations

import hashlib
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from twisted.application import service
from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from core import messages
from core.accounts import balance, history, set_warning_preferences, tier_status
from core.domain import (
    Channel,
    DomainError,
    InsufficientPoints,
    InvalidConfirmation,
    InvalidMsisdn,
    PinLocked,
    SecretCheck,
    TicketKind,
    mask_msisdn,
)
from core.log_limit import RepeatLimiter
from core.messages import Message
from core.messaging.records import OutboxRow, RateWindow, StoredMO
from core.metrics import Metrics
from core.redemption import catalogue, confirm_redemption, gift_orders, start_confirmation
from core.rules import last_valid_day
from core.service_desk import record_ticket
from ops.coalesce import Coalescer
from ops.dbservice import DatabaseService
from sms import keywords as kw
from sms.batching import GroupCommit, log_failure, scrubbed
from sms.esme_types import MOMessage
from sms.outbox import OutboxSender, render_fitting
from sms.pdu import ESME_RTHROTTLED
from sms.set_aside import (
    WAIT_FOR_FIRST,
    backoff,
    connection_lost,
    copied_reply,
    describe,
    repeat_reply,
    reply_row,
)

log = Logger()

REPLY_KIND = "reply"
FAILURE_REMINDER = 60  # while handling keeps failing, a log line every this many rounds
RATE_WINDOW = timedelta(minutes=1)


# --- storing (database thread) ----------------------------------------------------------------


DEDUPE_WINDOW_S = 120.0  # smpp.mo_dedupe_window_s


def whole_key(source: str, ref: int, total: int, text: str) -> str:
    """The identity of a joined message: the same set redelivered joins to the same key."""
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]
    return f"{source}:c{ref}.{total}:{digest}"


class _Keys:
    """Windowed dedupe keys. A deliver_sm carries no unique id, only its content, so the
    same content from the same number is a redelivery when it comes within ``window``
    seconds of the first copy, and a new message (the subscriber sending JF again
    tomorrow) after that. Stored keys carry the window number; a lookup checks this window
    and the previous one, limited to ``window`` seconds back."""

    def __init__(self, now: datetime, window: float) -> None:
        self.bucket = int(now.timestamp() // window)
        self.since = now - timedelta(seconds=window)

    def key(self, base: str) -> str:
        return f"{base}@{self.bucket}"

    def lookups(self, base: str) -> tuple[str, str]:
        return f"{base}@{self.bucket}", f"{base}@{self.bucket - 1}"


def store_mo_batch(uow, rules, mos: list[MOMessage], now: datetime,
                   window: float = DEDUPE_WINDOW_S) -> list[bool]:
    """Store MO messages (and concatenation parts); returns per message whether it was new
    (False: a redelivery of something stored within the dedupe window; a whole message is
    then stored again as a repeat of the first, see ``sms.set_aside``)."""
    keys_ = _Keys(now, window)
    whole: dict[str, dict[str, Any]] = {}
    parts: dict[str, dict[str, Any]] = {}
    bases: list[str] = []
    for mo in mos:
        source = mo.source_addr[:20]
        if mo.concat is None:
            base = f"{source}:{mo.dedup_key}"
            whole.setdefault(base, dict(dedupe_key=keys_.key(base), msisdn=source,
                                        text=mo.text, received_at=now))
        else:
            base = f"{source}:p:{mo.dedup_key}"
            parts.setdefault(base, dict(dedupe_key=keys_.key(base), msisdn=source,
                                        ref=mo.concat.ref, total=mo.concat.total,
                                        seq=mo.concat.seq, text=mo.segment_text,
                                        received_at=now))
        bases.append(base)
    known: set[str] = set()
    if whole:
        seen = uow.messaging.existing_mo_keys([k for b in whole for k in keys_.lookups(b)],
                                        keys_.since)
        known |= {b for b in whole if seen.intersection(keys_.lookups(b))}
    if parts:
        seen = uow.messaging.existing_part_keys([k for b in parts for k in keys_.lookups(b)],
                                          keys_.since)
        known |= {b for b in parts if seen.intersection(keys_.lookups(b))}
    uow.messaging.insert_mo([r for b, r in whole.items() if b not in known])
    earlier: set[str] = set()  # a second copy in this very batch is a repeat too
    repeats = []
    for i, b in enumerate(bases):
        if b in whole and (b in known or b in earlier):
            repeats.append((i, b))
        earlier.add(b)
    if repeats:
        _store_repeats(uow, mos, repeats, whole, keys_, now)
    if parts:
        uow.messaging.insert_mo_parts([r for b, r in parts.items() if b not in known])
        _join_parts(uow, mos, now, keys_)
    first: set[str] = set()
    new = []
    for base in bases:
        new.append(base not in known and base not in first)
        first.add(base)
    return new


def _store_repeats(uow, mos: list[MOMessage], repeats: list[tuple[int, str]],
                   whole: dict[str, dict[str, Any]], keys_: _Keys, now: datetime) -> None:
    """Store each repeated whole message again, pointing at the first copy."""
    ids = uow.messaging.mo_ids([k for _, b in repeats for k in keys_.lookups(b)])
    stamp = int(now.timestamp() * 1_000_000)
    rows = []
    for i, base in repeats:
        first = min((ids[k] for k in keys_.lookups(base) if k in ids), default=None)
        row = whole[base]
        rows.append(dict(dedupe_key=f"{keys_.key(base)}~{stamp}.{i}", msisdn=row["msisdn"],
                         text=mos[i].text, received_at=now, repeat_of=first))
    uow.messaging.insert_mo_repeats(rows)


def _join_parts(uow, mos: list[MOMessage], now: datetime, keys_: _Keys) -> None:
    sets: dict[tuple[str, int, int], MOMessage | None] = {}
    for mo in mos:
        if mo.concat is None:
            continue
        key = (mo.source_addr[:20], mo.concat.ref, mo.concat.total)
        if mo.complete:
            sets[key] = mo
        else:
            sets.setdefault(key, None)
    for (source, ref, total), complete in sets.items():
        stored = uow.messaging.open_parts(source, ref, total, keys_.since)
        if complete is not None:
            text = complete.text  # joined in memory from the raw payloads: exact
        elif len(stored) >= total:
            text = "".join(p.text for p in sorted(stored, key=lambda p: p.seq)[:total])
        else:
            continue
        base = whole_key(source, ref, total, text)
        existing = uow.messaging.existing_mo_keys(keys_.lookups(base), keys_.since)
        if existing:  # this set was joined already (a redelivered set)
            key = min(existing)
        else:
            key = keys_.key(base)
            uow.messaging.insert_mo([dict(dedupe_key=key, msisdn=source, text=text,
                                    received_at=now)])
        uow.messaging.join_parts([p.id for p in stored], key)


def housekeeping(uow, rules, now: datetime) -> tuple[int, int]:
    """Forget concatenation parts and rate windows older than a day: (parts, windows)."""
    day_ago = now - timedelta(days=1)
    parts = uow.messaging.purge_parts(day_ago)
    windows = uow.messaging.purge_rate_windows(day_ago)
    return parts, windows


# --- handling (database thread) ---------------------------------------------------------------


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


@dataclass
class _Work:
    settings: HandlerSettings
    now: datetime
    outcomes: Counter = field(default_factory=Counter)
    redemptions: int = 0
    problems: list[str] = field(default_factory=list)
    out_of_plan: list[str] = field(default_factory=list)
    # Balances of the batch's JF senders, read with one query (the commonest keyword).
    balances: dict[str, tuple[int, datetime | None, int]] = field(default_factory=dict)


def handle_batch(uow, rules, settings: HandlerSettings, now: datetime, limit: int,
                 claim_until: datetime | None) -> HandledBatch:
    """Handle up to ``limit`` received MO messages: those that only read in one transaction,
    each that writes (redeem, confirm, tickets, opt-out) in its own, after them.

    A writer inside the batch's transaction would keep the rows it locked (a reward's stock)
    while a later message of the batch waits for a member row, which a hotline redemption may
    hold while it waits for that stock: a deadlock on PostgreSQL. On its own, a writer locks
    member then reward, as every redemption does."""
    mos = uow.messaging.claim_mo(limit, now, only_from=settings.only_from,
                                 after_id=settings.after_id)
    if not mos:
        return HandledBatch()
    writes = {mo.id for mo in mos if kw.parse(mo.text).kind in _WRITERS}
    readers = [mo for mo in mos if mo.id not in writes]
    results = []
    if readers:
        results.append(_handle_together(uow, rules, settings, readers, now, claim_until))
    else:
        uow.rollback()  # let go of the claim: each writer is claimed again on its own
    results += [handle_one(uow, rules, settings, mo.id, now, claim_until)
                for mo in mos if mo.id in writes]
    return _merged(results)


def _handle_together(uow, rules, settings: HandlerSettings, mos: list[StoredMO],
                     now: datetime, claim_until: datetime | None) -> HandledBatch:
    """Claimed messages in one transaction, or one by one if that fails."""
    try:
        return _handle(uow, rules, settings, mos, now, claim_until)
    except Exception as exc:
        uow.rollback()
        if connection_lost(exc):
            raise
        problem = f"MO batch of {len(mos)} failed ({describe(exc)}); handling them one by one"
    results = [handle_one(uow, rules, settings, mo.id, now, claim_until) for mo in mos]
    merged = _merged(results)
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


def handle_one(uow, rules, settings: HandlerSettings, mo_id: int, now: datetime,
               claim_until: datetime | None) -> HandledBatch:
    """Handle one message in its own transaction; if that fails, count the attempt and try
    again after a backoff, or set the message aside after ``max_attempts``."""
    mos = uow.messaging.claim_mo_ids([mo_id])
    if not mos:
        return HandledBatch()
    try:
        return _handle(uow, rules, settings, mos, now, claim_until)
    except Exception as exc:
        uow.rollback()
        if connection_lost(exc):
            raise
        error, trace = describe(exc), traceback.format_exc()
    mos = uow.messaging.claim_mo_ids([mo_id])
    if not mos:
        return HandledBatch()
    mo = mos[0]
    attempts = mo.attempts + 1
    who = f"MO {mo_id} from {mask_msisdn(mo.msisdn)}"
    work = _Work(settings, now)
    if attempts < settings.max_attempts:
        delay = backoff(attempts, settings.retry_base_s)
        uow.messaging.mo_retry_later(mo_id, attempts, now + delay, error)
        uow.commit()
        return HandledBatch(1, {"retry": 1}, problems=(
            f"{who} failed (attempt {attempts} of {settings.max_attempts}), trying again in "
            f"{delay.total_seconds():g}s: {error}",))
    work.outcomes["set_aside"] += 1
    work.problems.append(f"{who} failed {attempts} times; set aside (loyalty queues list):\n"
                         + trace)
    rows = []
    msisdn = _msisdn(mo.msisdn, rules)
    if msisdn is not None:
        lang = uow.messaging.member_languages([msisdn]).get(msisdn, settings.default_language)
        rows.append(_reply_row(msisdn, lang, messages.UNAVAILABLE, mo, work, claim_until))
    uow.messaging.mo_set_aside(mo_id, attempts, error, now)
    return _finish(uow, [], [], rows, work, claim_until, count=1)


def _msisdn(source: str, rules) -> str | None:
    """The sender's national number; None outside the numbering plan (not served: no reply)."""
    try:
        return rules.numbering.normalise(source)
    except InvalidMsisdn:
        return None


def _handle(uow, rules, settings: HandlerSettings, mos: list[StoredMO], now: datetime,
            claim_until: datetime | None) -> HandledBatch:
    work = _Work(settings, now)
    numbers = {mo.id: _msisdn(mo.msisdn, rules) for mo in mos}
    languages = uow.messaging.member_languages([n for n in numbers.values() if n])
    windows = uow.messaging.rate_windows([numbers[m.id] or m.msisdn for m in mos]) \
        if settings.rate_limit else {}
    changed: dict[str, RateWindow] = {}
    rows: list[dict[str, Any]] = []
    waiting: set[int] = set()
    commands = {mo.id: kw.parse(mo.text) for mo in mos if numbers[mo.id] in languages}
    wanted = [numbers[i] for i, c in commands.items() if c.kind == kw.BALANCE]
    if wanted:
        work.balances = uow.messaging.balance_summaries(wanted, now)
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
            cmd = commands[mo.id]
            if mo.repeat_of is not None and cmd.kind in _WRITERS:
                how, reply = repeat_reply(uow, mo)
                if how == "wait":  # the first copy is handled first: answer like it
                    uow.messaging.mo_retry_later(mo.id, mo.attempts, now + WAIT_FOR_FIRST, None)
                    waiting.add(mo.id)
                    continue
                if how == "copy" and reply is not None:
                    work.outcomes["repeat"] += 1
                    rows.append(copied_reply(reply, mo, now, claim_until)[1])
                    continue
            work.outcomes[cmd.kind] += 1
            message = _dispatch(uow, rules, work, cmd, msisdn, lang)
        rows.append(_reply_row(msisdn, lang, message, mo, work, claim_until))
    uow.messaging.save_rate_windows(list(changed.values()))
    done = [mo for mo in mos if mo.id not in waiting]
    return _finish(uow, done, ["handled"] * len(done), rows, work, claim_until,
                   count=len(mos))


def _finish(uow, mos: list[StoredMO], states: list[str], rows: list[dict[str, Any]],
            work: _Work, claim_until: datetime | None, count: int | None = None
            ) -> HandledBatch:
    ids = uow.messaging.queue_outbox(rows)
    uow.messaging.mark_mo([(mo.id, s) for mo, s in zip(mos, states, strict=True)], work.now)
    uow.commit()
    claimed: tuple[OutboxRow, ...] = ()
    if claim_until is not None:
        claimed = tuple(OutboxRow(i, r["msisdn"], r["language"], r["template"], r["params"],
                                  r["body"], r["kind"], 1, ()) for i, r in zip(ids, rows,
                                                                                 strict=True))
    return HandledBatch(len(mos) if count is None else count, dict(work.outcomes),
                        work.redemptions, claimed,
                        0 if claim_until is not None else len(rows), tuple(work.problems),
                        tuple(work.out_of_plan))


def _rate(windows: dict[str, RateWindow], changed: dict[str, RateWindow], key: str,
          at: datetime, limit: int) -> str:
    w = windows.get(key)
    if w is None or at - w.window_start >= RATE_WINDOW or at < w.window_start:
        w = RateWindow(key, at, 1, False)
    else:
        w = replace(w, count=w.count + 1)
    verdict = "ok"
    if w.count > limit:
        verdict = "quiet" if w.warned else "warn"
        w = replace(w, warned=True)
    windows[key] = changed[key] = w
    return verdict


def _reply_row(msisdn: str, lang: str, message: Message, mo: StoredMO, work: _Work,
               claim_until: datetime | None) -> dict[str, Any]:
    body = render_fitting(message.template, lang, message.params, work.settings.max_parts)
    return reply_row(msisdn, lang, REPLY_KIND, message, body, mo, work.now, claim_until)


# --- keywords -> core -> message ----------------------------------------------------------

_WRITERS = (kw.REDEEM, kw.CONFIRM, kw.MAKEUP, kw.COMPLAINT, kw.STOP)


def _dispatch(uow, rules, work: _Work, cmd: kw.Command, msisdn: str, lang: str) -> Message:
    if cmd.kind not in _WRITERS:
        try:
            return _read(uow, rules, work, cmd, msisdn, lang)
        except DomainError as exc:
            work.problems.append(f"SMS {cmd.kind} for {mask_msisdn(msisdn)}: {exc!r}")
            return messages.SYSTEM_ERROR
    try:
        with uow.savepoint():
            return _write(uow, rules, work, cmd, msisdn, lang)
    except DomainError as exc:
        return _domain_reply(rules, work, cmd, exc, msisdn)


def _read(uow, rules, work: _Work, cmd: kw.Command, msisdn: str, lang: str) -> Message:
    now, s = work.now, work.settings
    if cmd.kind == kw.BALANCE:
        summary = work.balances.get(msisdn)
        if summary is None:
            return messages.balance_of(balance(uow, rules, msisdn, now))
        points, next_expiry, expiring = summary  # core.accounts.balance's figures, batched
        day = last_valid_day(next_expiry, rules.zone) if next_expiry else None
        return messages.balance_message(points, expiring, day)
    if cmd.kind == kw.TIER:
        return messages.tier_message(tier_status(uow, rules, msisdn, now), lang)
    if cmd.kind == kw.HISTORY:
        return messages.history_message(
            history(uow, rules, msisdn, now, limit=s.history_entries), rules.today)
    if cmd.kind == kw.CATALOGUE:
        return messages.catalogue_message(catalogue(uow, rules, msisdn, now), lang,
                                          s.catalogue_entries)
    if cmd.kind == kw.DELIVERY:
        orders = gift_orders(uow, rules, msisdn, now, limit=s.delivery_orders)
        names = {}
        for o in orders:
            if o.reward_code not in names:
                r = uow.get_reward(o.reward_code)
                names[o.reward_code] = r.name(lang) if r else o.reward_code
        return messages.delivery_message(orders, names)
    return messages.help_message(cmd.kind == kw.UNKNOWN)


def _write(uow, rules, work: _Work, cmd: kw.Command, msisdn: str, lang: str) -> Message:
    now = work.now
    if cmd.kind == kw.REDEEM:
        if not cmd.arg:
            return messages.REDEEM_USAGE
        quote, code, expires_at = start_confirmation(uow, rules, msisdn, cmd.arg, Channel.SMS,
                                                     now)
        minutes = max(1, round((expires_at - now).total_seconds() / 60))
        return messages.redeem_quote_message(quote, code, minutes, lang)
    if cmd.kind == kw.CONFIRM:
        if not cmd.arg:
            return messages.confirm_failed_message("no_code")
        order = confirm_redemption(uow, rules, msisdn, cmd.arg, Channel.SMS, now)
        if isinstance(order, SecretCheck):  # refused; its failure count is kept
            refusal = (PinLocked(order.locked_until) if order.locked_until is not None
                       else InvalidConfirmation(order.tries_left))
            return _domain_reply(rules, work, cmd, refusal, msisdn)
        if order.created_at == now:
            work.redemptions += 1
        reward = uow.get_reward(order.reward_code)
        return messages.redeem_done_message(
            order, reward.name(lang) if reward else order.reward_code,
            balance(uow, rules, msisdn, now).points)
    if cmd.kind in (kw.MAKEUP, kw.COMPLAINT):
        kind = TicketKind.MAKEUP if cmd.kind == kw.MAKEUP else TicketKind.COMPLAINT
        if not cmd.arg:
            return messages.ticket_usage_message(str(kind))
        ticket = record_ticket(uow, rules, msisdn, kind, cmd.arg, Channel.SMS, now)
        return messages.ticket_message(str(kind), ticket.ref)
    if cmd.kind == kw.STOP:
        set_warning_preferences(uow, rules, msisdn, now, opt_out=True)
        return messages.UNSUBSCRIBED
    raise AssertionError(cmd.kind)  # pragma: no cover


def _domain_reply(rules, work: _Work, cmd: kw.Command, exc: DomainError,
                  msisdn: str) -> Message:
    if isinstance(exc, InvalidConfirmation):
        return messages.confirm_failed_message(exc.code, tries_left=exc.tries_left)
    if isinstance(exc, PinLocked):
        until = exc.until.astimezone(rules.zone)
        return messages.confirm_failed_message(exc.code, until=f"{until:%H:%M}")
    if cmd.kind in (kw.REDEEM, kw.CONFIRM):
        code = cmd.arg if cmd.kind == kw.REDEEM else ""
        if isinstance(exc, InsufficientPoints):
            return messages.redeem_failed_message(exc.code, code, balance=exc.balance,
                                                  price=exc.price)
        return messages.redeem_failed_message(exc.code, code)
    work.problems.append(f"SMS {cmd.kind} for {mask_msisdn(msisdn)}: {exc!r}")
    return messages.SYSTEM_ERROR


# --- the reactor side -------------------------------------------------------------------------


class MOHandler(service.Service):
    """``on_deliver`` for the ESME session (store, then ack) and the handling loop."""

    def __init__(self, db: DatabaseService, metrics: Metrics, settings: HandlerSettings, *,
                 clock: IReactorTime, now: Callable[[], datetime],
                 sender: OutboxSender | None = None, batch_size: int = 200, poll_s: float = 1.0,
                 max_store_batch: int = 1000, housekeeping_s: float = 3600.0) -> None:
        self.db = db
        self.metrics = metrics
        self.settings = settings
        self.clock = clock
        self.now = now
        self.sender = sender
        self.batch_size = batch_size
        self.poll_s = poll_s
        self.housekeeping_s = housekeeping_s
        self._housekeeping: task.LoopingCall | None = None
        self.store = GroupCommit(self._flush_store, clock, max_items=max_store_batch)
        self._rounds = Coalescer(self._handle_round)
        self._poll: task.LoopingCall | None = None
        self.handled = 0  # MO rows handled by this process
        self._out_of_plan_log = RepeatLimiter()
        self._failures = 0  # handling rounds failed in a row (the database unreachable)

    # -- storing -----------------------------------------------------------------------------

    def on_deliver(self, mo: MOMessage) -> defer.Deferred:
        d = self.store.add(mo)
        d.addCallbacks(self._stored, self._store_failed)
        return d

    def _flush_store(self, mos: list[MOMessage]) -> defer.Deferred:
        d = self.db.run(store_mo_batch, mos, self.now(), self.settings.dedupe_window_s)
        d.addCallback(self._after_store)
        return d

    def _after_store(self, new: list[bool]) -> list[bool]:
        self.kick()  # a repeat (not new) is stored too, and answered
        return new

    def _stored(self, new: bool) -> int:
        if not new:
            self.metrics.sms_mo.labels(outcome="duplicate").inc()
        return 0

    def _store_failed(self, failure: Failure) -> int:
        self.metrics.sms_mo.labels(outcome="store_error").inc()
        log_failure(log, "could not store an MO message; answering throttled so the SMSC "
                    "redelivers it", failure)
        return ESME_RTHROTTLED

    # -- handling ----------------------------------------------------------------------------

    def kick(self) -> None:
        """Handle received messages now (again after the current batch, if one runs)."""
        self._rounds.kick()

    def _handle_round(self) -> defer.Deferred[None] | None:
        if not self.running:
            return None
        claim_until = self.sender.claim_until() if self.sender is not None else None
        d = self.db.run(handle_batch, self.settings, self.now(), self.batch_size, claim_until)
        d.addCallbacks(self._handled, self._failed, callbackArgs=(claim_until,))
        return d

    def _handled(self, batch: HandledBatch, claim_until: datetime | None = None) -> None:
        if self._failures:
            log.info("MO handling recovered after {n} failed rounds", n=self._failures)
            self._failures = 0
        self.handled += batch.count
        for problem in batch.problems:
            log.error("{problem}", problem=scrubbed(problem))
        for outcome, n in batch.outcomes.items():
            self.metrics.sms_mo.labels(outcome=outcome).inc(n)
        for sender in batch.out_of_plan:
            held_back = self._out_of_plan_log.allow(sender, self.clock.seconds())
            if held_back is not None:
                log.warn("SMS from {sender} stored, not answered: the number is outside the "
                         "numbering plan ({held_back} more from it since the last line)",
                         sender=sender, held_back=held_back)
        if batch.redemptions:
            self.metrics.redemptions.labels(channel="sms").inc(batch.redemptions)
        if self.sender is not None:
            if batch.claimed:
                self.sender.take(list(batch.claimed), claim_until)
            if batch.queued:
                self.sender.kick()
        if batch.count >= self.batch_size:
            self.kick()  # a full batch: more may be waiting

    def _failed(self, failure: Failure) -> Failure:
        # The database is unreachable: retried every poll, logged once and then every
        # FAILURE_REMINDER rounds, not a traceback a second.
        self._failures += 1
        if self._failures == 1:
            log_failure(log, "MO handling failed; retrying every {s}s", failure, s=self.poll_s)
        elif self._failures % FAILURE_REMINDER == 0:
            log.error("MO handling still failing after {n} rounds: {error}", n=self._failures,
                      error=scrubbed(failure.getErrorMessage().splitlines()[0][:200]
                                     if failure.getErrorMessage() else "?"))
        return failure  # no second round at once: the poll retries

    def startService(self) -> None:
        super().startService()
        self._poll = task.LoopingCall(self.kick)
        self._poll.clock = self.clock
        self._poll.start(self.poll_s, now=True)
        self._housekeeping = task.LoopingCall(self._tidy)
        self._housekeeping.clock = self.clock
        self._housekeeping.start(self.housekeeping_s, now=False)

    def _tidy(self) -> defer.Deferred:
        return self.db.run(housekeeping, self.now()).addErrback(
            lambda f: log_failure(log, "SMS housekeeping failed", f))

    def stopService(self) -> defer.Deferred:
        super().stopService()
        for loop in (self._poll, self._housekeeping):
            if loop is not None and loop.running:
                loop.stop()
        return defer.gatherResults([self.store.when_idle(), self._rounds.when_idle()])
