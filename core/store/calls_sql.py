"""Calls and service-desk tickets: what the hotline and the desk write down."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import func, insert, select, update

from core.domain import Ticket
from core.store.repository import SqlRepository
from core.store.tables import calls, tickets


class SqlCalls(SqlRepository):
    """Call records: the ``CallsRepository`` of ``core.ports``."""

    def record_call_start(self, *, uniqueid: str, msisdn_masked: str, script: str,
                          now: datetime) -> int:
        """A new call record; returns its id (uniqueids repeat, ids do not)."""
        return self.conn.execute(insert(calls).returning(calls.c.id), dict(
            uniqueid=uniqueid, msisdn_masked=msisdn_masked, script=script, started_at=now,
            menu_path="")).scalar_one()

    def record_call_end(self, *, uniqueid: str, menu_path: str, outcome: str,
                        now: datetime, call_id: int | None = None) -> None:
        """End the record ``call_id``; without it, the latest unended one for ``uniqueid``
        (never every call that shares the uniqueid)."""
        if call_id is None:
            call_id = self.conn.execute(select(func.max(calls.c.id)).where(
                calls.c.uniqueid == uniqueid, calls.c.ended_at.is_(None))).scalar()
        self.conn.execute(update(calls).where(calls.c.id == call_id).values(
            ended_at=now, menu_path=menu_path[:500], outcome=outcome))


class SqlTickets(SqlRepository):
    """Service-desk tickets: the ``TicketsRepository`` of ``core.ports``."""

    def add_ticket(self, *, msisdn: str, kind: str, text: str, channel: str, now: datetime,
                   prefix: str, day: date, recording_path: str | None = None,
                   order_no: str | None = None) -> Ticket:
        ticket_id = self.conn.execute(insert(tickets).returning(tickets.c.id), dict(
            msisdn=msisdn, kind=kind, text=text, channel=channel, status="open",
            created_at=now, recording_path=recording_path, order_no=order_no)).scalar_one()
        ref = f"{prefix}{day:%y%m%d}{ticket_id:06d}"
        self.conn.execute(update(tickets).where(tickets.c.id == ticket_id).values(ref=ref))
        return Ticket(ref, msisdn, kind, text, channel, now, recording_path=recording_path,
                      order_no=order_no)

    def get_ticket(self, ref: str, *, for_update: bool = False) -> Ticket | None:
        row = self._first(select(tickets).where(tickets.c.ref == ref), for_update=for_update)
        return _ticket(row) if row else None

    def list_tickets(self, *, msisdn: str | None = None, open_only: bool = False,
                     kind: str | None = None, limit: int = 100) -> list[Ticket]:
        """Newest first."""
        stmt = select(tickets).order_by(tickets.c.id.desc()).limit(limit)
        if msisdn is not None:
            stmt = stmt.where(tickets.c.msisdn == msisdn)
        if open_only:
            stmt = stmt.where(tickets.c.status == "open")
        if kind is not None:
            stmt = stmt.where(tickets.c.kind == kind)
        return [_ticket(row) for row in self.conn.execute(stmt)]

    def resolve_ticket(self, ref: str, *, outcome: str, credit_points: int | None,
                       now: datetime) -> bool:
        """Mark an open ticket resolved; False when it was not open (resolved already)."""
        done = self.conn.execute(update(tickets).where(
            tickets.c.ref == ref, tickets.c.status == "open").values(
            status="resolved", outcome=outcome, credit_points=credit_points, resolved_at=now))
        return done.rowcount == 1


def _ticket(row: Any) -> Ticket:
    return Ticket(row.ref, row.msisdn, row.kind, row.text, row.channel, row.created_at,
                  status=row.status, recording_path=row.recording_path, order_no=row.order_no,
                  outcome=row.outcome, credit_points=row.credit_points,
                  resolved_at=row.resolved_at)
