"""``loyalty simulate sms`` runs the keyword service for one made-up message: it must never
send, or mark as sent, a message that was waiting for a real subscriber."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from core.demo import load_demo
from sms.esme_types import MOMessage
from sms.handler import store_mo_batch

ZHANG = "13800138000"
ALICE = "15800158000"
BOB = "18600186000"


def test_simulate_sms_leaves_real_queued_messages_alone(store, rules, database_url):
    now = datetime.now(UTC)
    with store.unit_of_work() as uow:
        load_demo(uow, rules, now - timedelta(minutes=5))
        # An IVR SMS copy waiting for a real subscriber (the SMSC link was down), one for the
        # very number simulated, and a real MO not handled yet.
        for msisdn in (ZHANG, ALICE):
            uow.outbox.queue_message(msisdn=msisdn, language="zh", kind="ivr_copy", now=now,
                                     body=f"order details for {msisdn}", dedupe_key=f"ivr:{msisdn}")
        uow.commit()
        store_mo_batch(uow, rules, [MOMessage(BOB, "10086", "JF", True, None, "JF", 0, 0,
                                              "real-bob-jf")], now)
    env = dict(os.environ, LOYALTY_DATABASE_URL=database_url)
    done = subprocess.run([sys.executable, "-m", "core.cli", "simulate", "sms", ALICE, "DJ"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Loyalty: your tier is Silver"), lines
    with store.unit_of_work(write=False) as uow:
        waiting = {r["msisdn"]: (r["state"], r["attempts"]) for r in uow.messaging.outbox_rows()
                   if r["kind"] == "ivr_copy"}
        assert waiting == {ZHANG: ("queued", 0), ALICE: ("queued", 0)}
        assert [(m.msisdn, m.text) for m in uow.messaging.claim_mo(10)] == [(BOB, "JF")]
