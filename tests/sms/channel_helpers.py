"""A running SMS channel (sms_service + database service) against the SMSC simulator over
real TCP, on the test database. Used by the channel tests (test_handler*, test_outbox*,
test_channel_e2e)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from twisted.internet import reactor

from core.metrics import Metrics
from ops.dbservice import DatabaseService
from sms.encoding import Concat
from sms.esme_types import MOMessage
from sms.outbox import SenderSettings
from sms.server import sms_service

NOW = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai, as in the core tests


def code_of(reply: str) -> str:
    """The six-digit one-time code a quote reply carries."""
    m = re.search(r"(\d{6})", reply)
    assert m, reply
    return m.group(1)


def mo(source: str, text: str, *, key: str | None = None, concat: Concat | None = None,
       complete: bool = True, whole: str | None = None) -> MOMessage:
    """An MO as the ESME hands it to the handler (UCS-2, from ``source`` to 10086)."""
    return MOMessage(source, "10086", whole if whole is not None else text, complete, concat,
                     text, 8, 0x40 if concat else 0, key or f"k-{source}-{text}")


class Clock:
    """Programme time: starts at ``start`` and advances with the reactor (so retries and
    claims come due) while dates stay deterministic."""

    def __init__(self, start: datetime = NOW) -> None:
        self.start = start
        self.t0 = reactor.seconds()
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return self.start + self.offset + timedelta(seconds=reactor.seconds() - self.t0)

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)


def channel_config(config: Any, sim: Any, **smpp: Any) -> Any:
    values = dict(host="127.0.0.1", port=sim.port, system_id=sim.system_id,
                  password=sim.password, reconnect_min_s=0.05, reconnect_max_s=0.3,
                  max_submit_rate=1000.0, window=10, response_timeout_s=2.0)
    values.update(smpp)
    return config.replace("smpp", **values)


class Channel:
    """``await Channel(...).start()``; ``await ch.stop()``; ``await ch.restart()``."""

    def __init__(self, sim: Any, store: Any, rules: Any, config: Any, *,
                 clock: Clock | None = None, sender: SenderSettings | None = None,
                 **smpp: Any) -> None:
        self.sim = sim
        self.store = store
        self.rules = rules
        self.config = channel_config(config, sim, **smpp)
        self.clock = clock or Clock()
        self.sender_settings = sender or SenderSettings(
            max_parts=3, max_in_flight=200, lease_s=30.0, poll_s=0.05, retry_base_s=0.05,
            retry_max_s=0.5)
        self.metrics = Metrics()
        self.db: DatabaseService | None = None
        self.sms: Any = None

    async def start(self, *, wait_bound: bool = True) -> Channel:
        self.db = DatabaseService(self.store, self.rules, reactor)
        self.db.startService()
        self.sms = sms_service(self.config, self.db, self.metrics, reactor, now=self.clock,
                               sender_settings=self.sender_settings, metrics_s=0.5,
                               receipt_hold_s=60)
        self.sms.handler.poll_s = 0.05
        self.sms.receipts.sweep_s = 0.1
        self.sms.startService()
        if wait_bound:
            await self.sms.esme.whenBound()
        return self

    async def stop(self) -> None:
        if self.sms is not None and self.sms.running:
            await self.sms.stopService()
        if self.db is not None and self.db.running:
            await self.db.stopService()

    async def restart(self) -> Channel:
        await self.stop()
        return await self.start()

    async def idle(self, timeout: float = 5.0) -> None:
        """Wait until every outcome and receipt this process has is recorded."""
        sms = self.sms
        await self.sim.wait_for(
            lambda: not sms.sender.rows and not sms.sender.results.busy
            and not sms.receipts.batch.busy and not sms.handler.storing, timeout=timeout)

    # -- looking at the database ---------------------------------------------------------

    def run(self, use_case, *args, **kwargs):
        with self.store.unit_of_work() as uow:
            return use_case(uow, self.rules, *args, **kwargs)

    def outbox(self, msisdn: str | None = None) -> list[dict[str, Any]]:
        with self.store.unit_of_work(write=False) as uow:
            return uow.messaging.outbox_rows(msisdn)

    def mo_rows(self) -> list[dict[str, Any]]:
        from sqlalchemy import select

        from core.store.tables import mo_messages

        with self.store.unit_of_work(write=False) as uow:
            return [dict(r._mapping) for r in uow.conn.execute(
                select(mo_messages).order_by(mo_messages.c.id))]

    def metric(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels or None)
        return value or 0.0


async def converse(ch: Channel, msisdn: str, text: str, *, timeout: float = 5.0,
                   **inject: Any) -> str:
    """Send ``text`` from ``msisdn``; return the one new MT text the subscriber got."""
    before = len(ch.sim.texts_to(msisdn))
    status = await ch.sim.inject_mo(msisdn, text, **inject)
    assert status == 0, f"deliver_sm_resp status 0x{status:08x}"
    await ch.sim.wait_for(lambda: len(ch.sim.texts_to(msisdn)) > before, timeout=timeout)
    texts = ch.sim.texts_to(msisdn)[before:]
    assert len(texts) == 1, texts
    return texts[0]


def member(ch: Channel, msisdn: str):
    """The member's stored record (read in its own unit of work)."""
    with ch.store.unit_of_work(write=False) as uow:
        return uow.members.get_member(msisdn)
