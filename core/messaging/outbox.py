"""The outbox's use cases (database thread): claim due MT rows, record what became of them.

What the sender does with a claimed row, and what each outcome means, is ``sms.outbox``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from core.config import JobsConfig
from core.jobs.schedule import NOTICE_KINDS, release_time
from core.messaging.receipts import ReceiptItem, apply_held, hold_unmatched, settle
from core.messaging.records import OutboxRow


@dataclass(frozen=True)
class Outcome:
    """What became of one claimed row in this process."""

    outbox_id: int
    message_ids: tuple[str | None, ...]  # every part's id known so far
    accepted: tuple[tuple[int, str], ...]  # (part, id) accepted by this attempt
    state: str  # submitted, retry, failed, set_aside
    error: str | None = None
    not_before: datetime | None = None
    attempt: int = 0  # the row's attempts when this process claimed it (see _record)


def claim_batch(uow, rules, now: datetime, until: datetime, limit: int,
                render: Callable[[OutboxRow], str], quiet: JobsConfig | None = None
                ) -> tuple[list[OutboxRow], list[tuple[int, str]]]:
    """Claim due rows and render those without a body (the text is kept in ``body`` so every
    attempt sends the same parts). A row that cannot be rendered fails here. Returns (rows
    to send, [(id, error)] of the failed ones). In ``quiet``'s quiet hours, due notices (the
    jobs' messages) are first put off to the end of the quiet hours; replies still go."""
    if quiet is not None:
        release = release_time(now, rules.zone, quiet)
        if release > now:
            uow.messaging.put_off(NOTICE_KINDS, now, release)
    rows = uow.messaging.claim_outbox(now, until, limit)
    ready: list[OutboxRow] = []
    bodies: list[tuple[int, str]] = []
    failed: list[tuple[int, tuple, str]] = []
    for row in rows:
        try:
            text = render(row)
        except Exception as exc:  # noqa: BLE001 - a row that cannot be rendered fails alone
            failed.append((row.id, row.message_ids, f"render: {type(exc).__name__}: {exc}"))
            continue
        if text != row.body:
            bodies.append((row.id, text))
            row = replace(row, body=text)
        ready.append(row)
    uow.messaging.set_bodies(bodies)
    uow.messaging.record_failed(failed, now)
    return ready, [(row_id, error) for row_id, _, error in failed]


def record_events(uow, rules, outcomes: list[Outcome], receipts: list[ReceiptItem],
                  now: datetime, id_keys: Callable[[str], Iterable[str]]) -> dict[str, int]:
    """Submit outcomes (the newly accepted message ids stored under their ``id_keys``, and
    any receipt that arrived before its id was recorded applied), then delivery receipts, in
    one transaction (a receipt that overtook its submit_sm_resp in the same batch matches
    directly). Receipt counts by state."""
    counts = _record(uow, outcomes, now, id_keys) if outcomes else Counter()
    if receipts:
        counts.update(hold_unmatched(uow, receipts, now))
    return dict(counts)


def _record(uow, outcomes: list[Outcome], now: datetime,
            id_keys: Callable[[str], Iterable[str]]) -> Counter:
    # Only what this process still holds: a row whose claim lapsed and was taken by another
    # process is that one's to record (a retry recorded here would queue a row it has sent).
    # The usual outcome, submitted, is checked by the statement that records it.
    held = uow.messaging.claims_held([(o.outbox_id, o.attempt) for o in outcomes
                                      if o.state != "submitted"])
    held |= uow.messaging.record_submitted([(o.outbox_id, o.attempt, o.message_ids)
                                            for o in outcomes if o.state == "submitted"], now)
    outcomes = [o for o in outcomes if o.outbox_id in held]
    new_ids = [(o.outbox_id, part, mid, frozenset(id_keys(mid)))
               for o in outcomes for part, mid in o.accepted]
    uow.messaging.record_retry([(o.outbox_id, o.message_ids, o.not_before or now, o.error or "")
                          for o in outcomes if o.state == "retry"])
    uow.messaging.record_failed([(o.outbox_id, o.message_ids, o.error or "failed")
                           for o in outcomes if o.state == "failed"], now)
    aside = [o for o in outcomes if o.state == "set_aside"]
    if aside:
        uow.messaging.record_retry([(o.outbox_id, o.message_ids, now, o.error or "")
                                    for o in aside])
        uow.messaging.record_set_aside([(o.outbox_id, o.error or "") for o in aside], now)
    counts: Counter = Counter()
    overtaken = uow.messaging.add_message_ids(new_ids, now)
    if overtaken:
        counts.update(apply_held(uow, overtaken, now))
    # Parts accepted by an earlier attempt may have their receipts already.
    settle(uow, [o.outbox_id for o in outcomes
                 if o.state == "submitted" and len(o.accepted) < len(o.message_ids)], {}, now)
    return counts


def outbox_depth(uow, rules) -> int:
    """MT rows not yet accepted by the SMSC (queued or being sent)."""
    return uow.messaging.outbox_depth()


def release_claims(uow, rules, claims: list[tuple[int, int]]) -> None:
    """(id, attempts at the claim) of rows this process gives back."""
    uow.messaging.release_claims(claims)


def extend_claims(uow, rules, claims: list[tuple[int, int]], until: datetime) -> set[int]:
    """Extend this process's claims; returns the ids it no longer holds (claimed again after
    this one's lapsed). A row whose outcome was recorded meanwhile is not lost: it is done."""
    uow.messaging.extend_claims(claims, until)
    return uow.messaging.claims_taken(claims)
