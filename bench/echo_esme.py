"""The floor of the SMS benches: a bare ESME that answers every MO with one MT at once.

    .venv/bin/python -m bench.echo_esme --port PORT [--host 127.0.0.1] [--window 10]
        [--system-id loyalty] [--password secret]

smpplib's blocking client in its own process, nothing of ours: bind_transceiver, then read
PDUs forever; every deliver_sm that is not a delivery receipt is acknowledged and answered with
one fixed MT (the length of a balance reply, UCS-2, a receipt requested, as the server's are)
to its sender. At most ``--window`` submit_sm are outstanding; replies beyond wait here until a
submit_sm_resp frees a slot, as the server's window does. No database, no keyword handling: what
a peer measures against this is the cost of SMPP, the peer and the machine, the same run's floor
for the real server's figures. Prints ``bound`` on stdout once bound; exits on SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
from collections import deque
from typing import Any

REPLY = ("【积分查询】您的可用积分为9300分，其中800分将于2026年12月31日到期。"
         "回复LB查看礼品，DH+代码兑换。")
RECEIPT_TYPES = (0x04, 0x08, 0x10, 0x20)  # esm_class & 0x3C: receipts and notifications


def serve(host: str, port: int, system_id: str, password: str, window: int) -> None:
    import smpplib.client
    import smpplib.consts
    import smpplib.exceptions

    logging.getLogger("smpp").setLevel(logging.ERROR)  # no "disconnecting while bound" at exit
    client = smpplib.client.Client(host, port, timeout=30, allow_unknown_opt_params=True)
    payload = REPLY.encode("utf-16-be")
    waiting: deque[str] = deque()
    state = {"outstanding": 0}

    def flush() -> None:
        while waiting and state["outstanding"] < window:
            number = waiting.popleft()
            state["outstanding"] += 1
            client.send_message(
                source_addr_ton=smpplib.consts.SMPP_TON_NWSPEC, source_addr="10086",
                dest_addr_ton=smpplib.consts.SMPP_TON_INTL, destination_addr=number,
                short_message=payload, data_coding=smpplib.consts.SMPP_ENCODING_ISO10646,
                esm_class=0, registered_delivery=1)

    def received(pdu: Any, **_: Any) -> int:
        if (pdu.esm_class or 0) & 0x3C not in RECEIPT_TYPES:
            source = pdu.source_addr
            waiting.append(source.decode() if isinstance(source, bytes) else source)
        return 0

    def sent(pdu: Any, **_: Any) -> None:
        state["outstanding"] = max(0, state["outstanding"] - 1)

    client.set_message_received_handler(received)
    client.set_message_sent_handler(sent)
    client.connect()
    try:
        client._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a PDU a segment
        client.bind_transceiver(system_id=system_id, password=password)
        print("bound", flush=True)
        while True:
            client.read_once()
            flush()
    except smpplib.exceptions.ConnectionError as exc:  # the SMSC went away: the bench is over
        print(f"echo_esme: {exc}", file=sys.stderr)
    finally:
        client.disconnect()  # no unbind: SIGTERM ends the process as a crash would


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.echo_esme", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--window", type=int, default=10)
    p.add_argument("--system-id", default="loyalty")
    p.add_argument("--password", default="secret")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(args.host, args.port, args.system_id, args.password, args.window)
    return 0


if __name__ == "__main__":
    sys.exit(main())
