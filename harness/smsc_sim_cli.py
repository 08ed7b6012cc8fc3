"""Command line of the SMSC simulator: ``python -m harness.smsc_simulator --port 2775``.

Logs every PDU it receives (phone numbers masked) and each reassembled MT text. Lines typed on
stdin: ``mo <msisdn> <text>`` sends an MO message to the bound ESME; ``unbind`` asks the
ESME to unbind; ``quit`` stops.
"""

from __future__ import annotations

import argparse
import sys

from twisted.internet import stdio
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver
from twisted.protocols.basic import LineReceiver

from harness.smsc_simulator import SMSCSimulator

log = Logger()


class _Console(LineReceiver):
    delimiter = b"\n"

    def __init__(self, sim: SMSCSimulator, reactor):
        self.sim = sim
        self.reactor = reactor

    def lineReceived(self, line: bytes) -> None:
        words = line.decode("utf-8", "replace").strip().split(None, 2)
        if not words:
            return
        try:
            if words[0] == "mo" and len(words) == 3:
                self.sim.inject_mo(words[1], words[2]).addBoth(
                    lambda r: log.info("MO answered: {r}", r=r))
            elif words[0] == "unbind":
                self.sim.send_unbind()
            elif words[0] == "quit":
                self.reactor.stop()
            else:
                log.info("commands: mo <msisdn> <text> | unbind | quit")
        except RuntimeError as exc:
            log.warn("{err}", err=str(exc))


def run(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m harness.smsc_simulator",
                                     description="SMPP 3.4 SMSC simulator")
    parser.add_argument("--port", type=int, default=2775)
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--system-id", default="loyalty")
    parser.add_argument("--password", default="secret")
    parser.add_argument("--id-style", choices=["hex", "HEX", "dec"], default="hex")
    parser.add_argument("--receipt-id-style", default="same",
                        choices=["same", "dec", "hex", "HEX", "zeros"])
    parser.add_argument("--receipt-delay", type=float, default=1.0)
    parser.add_argument("--throttle-fraction", type=float, default=0.0)
    parser.add_argument("--enquire-link", type=float, default=None)
    parser.add_argument("--short-code", default="10086")
    args = parser.parse_args(argv)

    from twisted.internet import reactor

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    sim = SMSCSimulator(
        args.system_id, args.password, id_style=args.id_style,
        receipt_id_style=args.receipt_id_style, receipt_delay_s=args.receipt_delay,
        enquire_link_s=args.enquire_link, short_code=args.short_code, log_pdus=True,
    )
    sim.throttle_fraction = args.throttle_fraction
    port = sim.listen(args.port, args.interface)
    log.info("SMSC simulator listening on {host}:{port}", host=args.interface,
             port=port.getHost().port)
    if sys.stdin.isatty() or not sys.stdin.closed:
        stdio.StandardIO(_Console(sim, reactor))
    reactor.run()
