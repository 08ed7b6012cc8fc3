"""Queries for what the queues set aside: MO messages whose handling kept failing, MT messages
the SMSC kept refusing for a while, members a job run could not process.

Items are named ``mo:<id>``, ``mt:<id>`` (outbox) and ``job:<id>`` (job_set_aside) for the
``loyalty queues`` command and the ``loyalty_set_aside`` gauge.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

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
