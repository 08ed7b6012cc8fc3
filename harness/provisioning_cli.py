"""``loyalty simulate provisioning``: the provisioning API simulator as an ops command. Twisted is
imported only when it runs (importing the ``loyalty`` command must not load it)."""

from __future__ import annotations

import argparse
from typing import Any

MODES = ("ok", "slow", "5xx", "4xx", "drop", "flaky")


def register(group: Any) -> None:
    parser = group.add_parser("provisioning", help="a provisioning API for service fulfilment",
                              description="Answer the fulfilment POSTs of the server "
                                          "(fulfilment.url) and print each request.")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--mode", choices=MODES, default="ok")
    parser.add_argument("--delay", type=float, default=30.0, help="answer delay in slow mode")
    parser.set_defaults(func=_cmd_provisioning)


def _cmd_provisioning(ctx: Any) -> int:
    from harness.provisioning_sim import ProvisioningSim

    args: argparse.Namespace = ctx.args
    sim = ProvisioningSim(args.mode, delay_s=args.delay, echo=True)
    port = sim.listen(args.port)
    print(f"provisioning simulator ({args.mode}) on http://127.0.0.1:{port}/ "
          f"(set fulfilment.url to it); Ctrl-C ends", flush=True)
    sim.reactor.run()
    return 0
