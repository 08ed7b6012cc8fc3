"""``loyalty simulate sms MSISDN TEXT``: the reply a subscriber would get.

Starts an SMSC simulator in this process (``--host``/``--port``, default 127.0.0.1 and a free
port), runs the SMS channel against it on the configured database (the keyword really runs:
a ``DH`` issues a code, a ``TD`` opts out), sends ``TEXT`` from ``MSISDN`` and prints every MT
the subscriber gets within ``--wait`` seconds of the first (all of them, for a reply that
queued more than one). Exit status 0 when a reply came, 1 when none did (e.g. rate limited).

It handles only the message it sends and sends only the replies to it: messages waiting in
the queues for real subscribers (an IVR SMS copy, a notice, an unhandled MO) are left to the
server, and the simulator sends no delivery receipts that could match a real message's id.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(group: Any) -> None:
    """Add ``sms`` to the ``loyalty simulate`` subcommands."""
    sms = group.add_parser(
        "sms", help="send one SMS to the keyword service and print the reply",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sms.add_argument("msisdn", help="the subscriber's number")
    sms.add_argument("text", help='the message, e.g. "JF" or "DH A01"')
    sms.add_argument("--host", default="127.0.0.1", help="simulator listen address")
    sms.add_argument("--port", type=int, default=0, help="simulator port (default: a free one)")
    sms.add_argument("--timeout", type=float, default=10.0,
                     help="seconds to wait for the reply (default 10)")
    sms.add_argument("--wait", type=float, default=0.3,
                     help="seconds to wait for more messages after the first (default 0.3)")
    sms.set_defaults(func=cmd_simulate_sms)


def cmd_simulate_sms(ctx: Any) -> int:
    from twisted.internet import defer, task
    from twisted.internet.error import CannotListenError

    ctx.store.check_schema()
    box: dict[str, Any] = {}

    def main(reactor) -> defer.Deferred:
        d = defer.ensureDeferred(simulate(ctx, reactor))
        d.addCallback(lambda texts: box.setdefault("texts", texts))
        d.addErrback(cannot_listen)
        return d

    def cannot_listen(failure) -> None:  # --host/--port taken or not this machine's
        failure.trap(CannotListenError)
        box["cannot_listen"] = failure.value

    try:
        task.react(main)
    except SystemExit as exit_:
        if exit_.code:
            return int(exit_.code)
    if "cannot_listen" in box:
        problem = box["cannot_listen"]
        reason = getattr(problem.socketError, "strerror", None) or problem.socketError
        print(f"the SMSC simulator cannot listen on {problem.interface}:{problem.port}: "
              f"{str(reason).lower()}; give another --port, or leave it out for a free one",
              file=sys.stderr)
        return 1
    texts = box.get("texts") or []
    if not texts:
        print("(no reply)", file=sys.stderr)
        return 1
    for text in texts:
        print(text)
    return 0


def last_mo_id(uow: Any, rules: Any) -> int:
    """The id of the newest MO message stored (0 when none)."""
    return uow.messaging.last_mo_id()


async def simulate(ctx: Any, reactor: Any) -> list[str]:
    from dataclasses import replace

    from twisted.internet import task

    from core.metrics import Metrics
    from harness.smsc_simulator import SMSCSimulator
    from ops.dbservice import DatabaseService
    from sms.server import sms_service

    args = ctx.args
    config = ctx.config
    sim = SMSCSimulator(config.smpp.system_id, config.smpp.password,
                        short_code=config.smpp.source_addr, receipts=False)
    port = sim.listen(args.port, args.host).getHost().port
    config = config.replace("smpp", enabled=True, host=args.host, port=port)
    db = DatabaseService(ctx.store, ctx.rules, reactor)
    db.startService()
    sms = sms_service(config, db, Metrics(), reactor)
    # Only this simulation's message and its replies: the queues belong to the server.
    sms.handler.settings = replace(sms.handler.settings, only_from=args.msisdn[:20],
                                   after_id=ctx.run(last_mo_id, write=False))
    sms.sender.settings = replace(sms.sender.settings, claim_queue=False)
    sms.receipts.sweep_s = 24 * 3600.0  # the server's held receipts are the server's
    sms.startService()
    try:
        await sms.esme.whenBound()
        before = len(sim.texts_to(args.msisdn))
        status = await sim.inject_mo(args.msisdn, args.text)
        if status:
            print(f"the server answered the MO with status 0x{status:08x}", file=sys.stderr)
            return []
        try:
            await sim.wait_for(lambda: len(sim.texts_to(args.msisdn)) > before,
                               timeout=args.timeout)
        except Exception:  # noqa: BLE001 - no reply within the timeout
            return []
        await task.deferLater(reactor, args.wait, lambda: None)
        return sim.texts_to(args.msisdn)[before:]
    finally:
        await sms.stopService()
        await sim.stop()
        await db.stopService()
