"""Queries for what the queues set aside: MO messages whose handling kept failing, MT messages
the SMSC kept refusing for a while, members a job run could not process.

Items are named ``mo:<id>``, ``mt:<id>`` (outbox) and ``job:<id>`` (job_set_aside) for the
``loyalty queues`` command and the ``loyalty_set_aside`` gauge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update

from core.store.tables import job_set_aside, mo_messages, outbox

SET_ASIDE = "set_aside"
QUEUES = ("mo", "mt", "job")


@dataclass(frozen=True)
class SetAsideItem:
    item: str  # mo:12, mt:34, job:5
    msisdn: str
    what: str  # the MO text, the MT template, the job name
    attempts: int
    error: str | None
    at: datetime | None


class QueueQueries:
    """Mixed into SqlUnitOfWork; uses ``self.conn``."""

    # --- MO handling attempts ---------------------------------------------------------------

    def sms_mo_retry_later(self, mo_id: int, attempts: int, not_before: datetime,
                           error: str | None) -> None:
        values: dict[str, Any] = dict(attempts=attempts, next_attempt_at=not_before)
        if error is not None:
            values["last_error"] = error[:200]
        self.conn.execute(update(mo_messages).where(mo_messages.c.id == mo_id).values(**values))

    def sms_mo_set_aside(self, mo_id: int, attempts: int, error: str, now: datetime) -> None:
        self.conn.execute(update(mo_messages).where(mo_messages.c.id == mo_id).values(
            state=SET_ASIDE, attempts=attempts, last_error=error[:200], handled_at=now,
            next_attempt_at=None))

    def sms_mo_ids(self, keys: Sequence[str]) -> dict[str, int]:
        """dedupe key -> id of the stored messages among ``keys``."""
        if not keys:
            return {}
        rows = self.conn.execute(select(mo_messages.c.dedupe_key, mo_messages.c.id).where(
            mo_messages.c.dedupe_key.in_(list(keys))))
        return {k: i for k, i in rows}

    def sms_last_mo_id(self) -> int:
        return int(self.conn.execute(select(func.max(mo_messages.c.id))).scalar() or 0)

    def sms_insert_mo_repeats(self, rows: Sequence[dict[str, Any]]) -> None:
        """rows: dedupe_key, msisdn, text, received_at, repeat_of."""
        if rows:
            self.conn.execute(mo_messages.insert(), [dict(r, state="received") for r in rows])

    def sms_mo_outcome(self, mo_id: int) -> tuple[str | None, dict[str, Any] | None]:
        """(state of the message, its reply's outbox row or None)."""
        state = self.conn.execute(select(mo_messages.c.state).where(
            mo_messages.c.id == mo_id)).scalar()
        reply = self.conn.execute(select(outbox).where(
            outbox.c.dedupe_key == f"mo:{mo_id}")).first()
        return state, dict(reply._mapping) if reply is not None else None

    # --- MT ---------------------------------------------------------------------------------

    def sms_record_set_aside(self, rows: Sequence[tuple[int, str]], now: datetime) -> None:
        """(outbox id, error): an MT that kept failing, out of the queue until retried."""
        for row_id, error in rows:
            self.conn.execute(update(outbox).where(outbox.c.id == row_id).values(
                state=SET_ASIDE, claimed_until=None, error=error[:200], final_at=now))

    # --- ops --------------------------------------------------------------------------------

    def set_aside_counts(self) -> dict[str, int]:
        mo = self.conn.execute(select(func.count()).select_from(mo_messages).where(
            mo_messages.c.state == SET_ASIDE)).scalar_one()
        mt = self.conn.execute(select(func.count()).select_from(outbox).where(
            outbox.c.state == SET_ASIDE)).scalar_one()
        job = self.conn.execute(select(func.count()).select_from(job_set_aside)).scalar_one()
        return {"mo": int(mo), "mt": int(mt), "job": int(job)}

    def set_aside_items(self, limit: int = 1000) -> list[SetAsideItem]:
        m, o, j = mo_messages.c, outbox.c, job_set_aside.c
        items = [SetAsideItem(f"mo:{r.id}", r.msisdn, r.text, r.attempts, r.last_error,
                              r.handled_at)
                 for r in self.conn.execute(select(mo_messages).where(
                     m.state == SET_ASIDE).order_by(m.id).limit(limit))]
        items += [SetAsideItem(f"mt:{r.id}", r.msisdn, r.template or r.kind, r.attempts,
                               r.error, r.final_at)
                  for r in self.conn.execute(select(outbox).where(
                      o.state == SET_ASIDE).order_by(o.id).limit(limit))]
        items += [SetAsideItem(f"job:{r.id}", r.item, f"{r.job} {r.run_key}", 1, r.error,
                               r.created_at)
                  for r in self.conn.execute(select(job_set_aside).order_by(j.id).limit(limit))]
        return items

    def release_set_aside(self, queue: str, item_id: int, now: datetime) -> bool:
        """Put a set-aside item back in its queue, due now, attempts counted afresh."""
        if queue == "mo":
            result = self.conn.execute(update(mo_messages).where(
                mo_messages.c.id == item_id, mo_messages.c.state == SET_ASIDE).values(
                state="received", attempts=0, next_attempt_at=None, handled_at=None))
        elif queue == "mt":
            result = self.conn.execute(update(outbox).where(
                outbox.c.id == item_id, outbox.c.state == SET_ASIDE).values(
                state="queued", attempts=0, not_before=now, final_at=None))
        else:
            result = self.conn.execute(delete(job_set_aside).where(
                job_set_aside.c.id == item_id))
        return result.rowcount > 0

    def discard_set_aside(self, queue: str, item_id: int, now: datetime) -> bool:
        """Give up on a set-aside item for good (kept, as ``discarded``, for the record)."""
        if queue == "mo":
            result = self.conn.execute(update(mo_messages).where(
                mo_messages.c.id == item_id, mo_messages.c.state == SET_ASIDE).values(
                state="discarded", handled_at=now))
        elif queue == "mt":
            result = self.conn.execute(update(outbox).where(
                outbox.c.id == item_id, outbox.c.state == SET_ASIDE).values(
                state="discarded", final_at=now))
        else:
            result = self.conn.execute(delete(job_set_aside).where(
                job_set_aside.c.id == item_id))
        return result.rowcount > 0
