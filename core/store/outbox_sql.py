"""Outbox writes of the use cases and jobs (an SMS to send later), and the count of what is due.

The SMS channel claims, sends and finalises these rows with its own queries."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select

from core.store.repository import SqlRepository
from core.store.tables import outbox


class SqlOutbox(SqlRepository):
    """Queued SMS: the ``OutboxRepository`` of ``core.ports``."""

    def queue_message(self, *, msisdn: str, language: str, kind: str, now: datetime,
                      template: str | None = None, params: dict[str, Any] | None = None,
                      body: str | None = None, dedupe_key: str | None = None,
                      not_before: datetime | None = None) -> int:
        if dedupe_key is not None:
            existing = self.conn.execute(
                select(outbox.c.id).where(outbox.c.dedupe_key == dedupe_key)).scalar()
            if existing is not None:
                return existing
        return self.conn.execute(insert(outbox).returning(outbox.c.id), dict(
            msisdn=msisdn, language=language, template=template,
            params=json.dumps(params or {}, ensure_ascii=False, default=str), body=body,
            kind=kind, dedupe_key=dedupe_key, state="queued", attempts=0,
            not_before=not_before or now, created_at=now)).scalar_one()

    def queue_messages_bulk(self, rows: Sequence[dict[str, Any]], now: datetime) -> None:
        """Many outbox rows at once (template + params, rendered at send time); a row whose
        ``dedupe_key`` is there already is skipped. ``params`` is a dict, or its JSON text."""
        if not rows:
            return
        values = [dict(msisdn=r["msisdn"], language=r["language"], template=r["template"],
                       params=r["params"] if isinstance(r["params"], str) else
                       json.dumps(r["params"], ensure_ascii=False, default=str),
                       kind=r["kind"], dedupe_key=r["dedupe_key"],
                       not_before=r.get("not_before") or now) for r in rows]
        self._insert_new(
            outbox, values, dict(state="queued", attempts=0, created_at=now, body=None),
            unique=["dedupe_key"],
            copy_columns=dict(msisdn="varchar(20)", language="varchar(5)",
                              template="varchar(50)", params="text", kind="varchar(30)",
                              dedupe_key="varchar(150)", not_before="timestamp",
                              state="varchar(15)", attempts="integer", created_at="timestamp"),
            copy_conflict="ON CONFLICT (dedupe_key) DO NOTHING")

    def outbox_for(self, msisdn: str) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            select(outbox).where(outbox.c.msisdn == msisdn).order_by(outbox.c.id))
        return [dict(r._mapping) for r in rows]

    def due_message_count(self, now: datetime, kind: str | None = None) -> int:
        """Queued outbox messages whose ``not_before`` has come."""
        stmt = select(func.count()).select_from(outbox).where(
            outbox.c.state == "queued", outbox.c.not_before <= now)
        if kind:
            stmt = stmt.where(outbox.c.kind == kind)
        return int(self.conn.execute(stmt).scalar_one())
