"""Expiry warnings: one per member, expiring batch and stage, recorded when queued.

A member's *expiring batch* is the points of their lots sharing one expiry instant. A batch
whose last valid day (programme time zone) is within ``jobs.warning_days`` gets the first
warning (stage ``30d``); within ``jobs.final_warning_days``, the final reminder (stage ``7d``).
The stage names are identifiers, whatever the configured numbers of days. A batch first seen
inside the final window gets only the final reminder.

The warning row (unique msisdn + expires_at + stage) and its outbox row are written in the same
transaction, so a run that crashes and starts again never queues a warning twice. SMS warnings
queued in quiet hours are held (``not_before``) until the quiet hours end; members who chose
voice get a ``pending`` voice row instead, which the voice dispatcher calls.

This module also holds the use cases of the voice warning calls (claiming due calls, recording
their outcome, what the call says, the SMS copy).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from core.config import AMIConfig, JobsConfig, parse_range
from core.domain import LANGUAGES
from core.jobs.base import Sample, Step, add, queue_notice
from core.jobs.records import ExpiringBatch, VoiceCall
from core.jobs.schedule import release_time, within_hours
from core.messages import expiry_warning_message
from core.ports import UnitOfWork
from core.rules import ProgrammeRules, last_valid_day, start_of_local_day

STAGE_FIRST = "30d"
STAGE_FINAL = "7d"
KIND = "expiry_warning"
BATCH = 10_000

# Voice warning states: pending -> calling -> called | pending (retry) | failed;
# also expired (the points lapsed before a call got through) and cancelled (opted out).
PENDING, CALLING, CALLED, FAILED = "pending", "calling", "called", "failed"
QUEUED = "queued"


def stage_for(last_day: date, today: date, config: JobsConfig) -> str | None:
    days_left = (last_day - today).days
    if days_left < 0 or days_left > config.warning_days:
        return None
    return STAGE_FINAL if days_left <= config.final_warning_days else STAGE_FIRST


def expiry_warnings(uow: UnitOfWork, rules: ProgrammeRules, now: datetime, config: JobsConfig,
                    cursor: str | None = None, *, dry_run: bool = False, samples: int = 0,
                    batch: int = BATCH) -> Step:
    """One batch of members (msisdn order, after ``cursor``): queue their due warnings."""
    zone = rules.zone
    today = rules.today(now)
    after = cursor or ""
    upto, page = uow.jobs.member_page_bound(after, batch)
    counts: dict[str, int] = {"members": page}
    if upto is None:
        return Step(None, counts)
    horizon = start_of_local_day(today + timedelta(days=config.warning_days + 1), zone)
    groups: list[ExpiringBatch] = uow.jobs.expiring_batches(after, upto, now, horizon)
    warned = uow.jobs.warned_keys(after, upto, now)
    release = release_time(now, zone, config)
    warnings, messages, picked = [], [], []
    per_expiry: dict[datetime, tuple] = {}  # a batch of members shares a few expiry instants
    default_language = rules.programme.default_language
    for group in groups:
        known = per_expiry.get(group.expires_at)
        if known is None:
            last_day = last_valid_day(group.expires_at, zone)
            stage = stage_for(last_day, today, config)
            warning = expiry_warning_message(0, last_day, today, stage,
                                             final=stage == STAGE_FINAL)
            fixed = {k: v for k, v in warning.params.items() if k != "points"}
            # The message parameters as JSON, but for the points: serialised once per instant.
            known = per_expiry[group.expires_at] = (
                stage, warning.template, fixed, json.dumps(fixed, ensure_ascii=False)[1:],
                f"{group.expires_at:%Y%m%d%H%M%S}:{stage}")
        stage, template, fixed, fixed_json, key_tail = known
        if stage is None:
            continue
        add(counts, "batches")
        if group.opted_out:
            add(counts, "opted_out")
            continue
        if (group.msisdn, group.expires_at, stage) in warned:
            add(counts, "already_warned")
            continue
        add(counts, "points", group.points)
        voice = group.warning_channel == "voice"
        warnings.append(dict(msisdn=group.msisdn, expires_at=group.expires_at, stage=stage,
                             points=group.points, channel="voice" if voice else "sms",
                             state=PENDING if voice else QUEUED))
        if voice:
            add(counts, "voice")
            continue
        add(counts, f"sms_{stage}")
        language = group.language if group.language in LANGUAGES else default_language
        messages.append(dict(msisdn=group.msisdn, language=language, template=template,
                             params=f'{{"points": {group.points}, {fixed_json}', kind=KIND,
                             dedupe_key=f"expiry:{group.msisdn}:{key_tail}",
                             not_before=release))
        if len(picked) < samples:
            picked.append(Sample(group.msisdn, language, template,
                                 {"points": group.points, **fixed}))
    if messages and release > now:
        add(counts, "held_for_quiet_hours", len(messages))
    if not dry_run:
        uow.jobs.add_expiry_warnings(warnings, now)
        uow.outbox.queue_messages_bulk(messages, now)
    return Step(upto if page >= batch else None, counts, tuple(picked))


# --- voice warning calls -------------------------------------------------------------------


@dataclass(frozen=True)
class CallWarning:
    """What the expiry-warning call says."""

    warning_id: int
    msisdn: str
    points: int
    expires_at: datetime
    last_day: date
    language: str


def stale_call_after(ami: AMIConfig) -> timedelta:
    """A warning left ``calling`` this long was being called by a process that died."""
    return timedelta(seconds=max(600.0, 4 * ami.answer_timeout_s))


def claim_voice_calls(uow: UnitOfWork, rules: ProgrammeRules, now: datetime, ami: AMIConfig,
                      limit: int) -> list[VoiceCall]:
    """Take up to ``limit`` due voice warnings for a call attempt (state ``calling``).

    Due: pending and never tried, or tried at least ``ami.retry_after_s`` ago; or left
    ``calling`` by a dead process. Nothing outside ``ami.calling_hours``. Warnings whose
    points already lapsed, or whose member opted out, are closed instead of called.
    """
    if limit <= 0 or not within_hours(now, rules.zone, parse_range(ami.calling_hours)):
        return []
    due = uow.jobs.due_voice_warnings(now - timedelta(seconds=ami.retry_after_s),
                                      now - stale_call_after(ami), limit)
    calls = []
    for row, opted_out in due:
        if row.expires_at <= now:
            uow.jobs.set_expiry_warning_state(row.id, "expired", now)
        elif opted_out:
            uow.jobs.set_expiry_warning_state(row.id, "cancelled", now)
        elif row.attempts > ami.retries:  # a stale call that was already the last try
            uow.jobs.set_expiry_warning_state(row.id, FAILED, now)
        else:
            uow.jobs.set_expiry_warning_state(row.id, CALLING, now, attempts=row.attempts + 1)
            calls.append(VoiceCall(row.id, row.msisdn, row.points, row.expires_at,
                                   row.attempts + 1))
    return calls


def record_call_outcome(uow: UnitOfWork, rules: ProgrammeRules, warning_id: int, outcome: str,
                        now: datetime, ami: AMIConfig) -> str:
    """After an attempt: ``answered`` -> called; ``not-placed`` (AMI down, the phone never
    rang) -> pending without using up a try; ``invalid`` (not a number AMI can dial) ->
    failed; anything else (no-answer, busy, congestion,
    failed, unknown) -> pending for a retry ``ami.retry_after_s`` later, or failed after
    ``ami.retries`` retries. Returns the new state."""
    row = uow.jobs.get_expiry_warning(warning_id)
    if row is None or row.state != CALLING:
        return row.state if row else "unknown"
    if outcome == "answered":
        state, attempts = CALLED, None
    elif outcome == "invalid":
        state, attempts = FAILED, None
    elif outcome == "not-placed":
        state, attempts = PENDING, max(0, row.attempts - 1)
    else:
        state, attempts = (FAILED if row.attempts > ami.retries else PENDING), None
    uow.jobs.set_expiry_warning_state(warning_id, state, now, attempts=attempts)
    return state


def warning_for_call(uow: UnitOfWork, rules: ProgrammeRules, warning_id: int, msisdn: str,
                     now: datetime) -> CallWarning | None:
    """The warning a call was placed for; None unless id and number match a voice warning."""
    row = uow.jobs.get_expiry_warning(warning_id)
    if row is None or row.msisdn != msisdn:
        return None
    member = uow.members.get_member(row.msisdn)
    language = member.language if member and member.language in LANGUAGES else \
        rules.programme.default_language
    return CallWarning(row.id, row.msisdn, row.points, row.expires_at,
                       last_valid_day(row.expires_at, rules.zone), language)


def send_warning_copy(uow: UnitOfWork, rules: ProgrammeRules, warning_id: int, msisdn: str,
                      now: datetime, config: JobsConfig) -> bool:
    """Queue the SMS copy of a voice warning (once per warning). False if it is unknown."""
    warning = warning_for_call(uow, rules, warning_id, msisdn, now)
    if warning is None:
        return False
    row = uow.jobs.get_expiry_warning(warning_id)
    message = expiry_warning_message(warning.points, warning.last_day, rules.today(now),
                                     row.stage, final=row.stage == STAGE_FINAL)
    queue_notice(uow, rules, config, warning.msisdn, now, kind=KIND, template=message.template,
                 params=message.params, dedupe_key=f"expiry-copy:{warning_id}")
    return True
