"""``loyalty simulate call|calls|sms``: the simulators as ops commands."""

from __future__ import annotations

from typing import Any

from harness import call_cli, provisioning_cli, sms_cli


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("simulate", help="simulated calls and SMS conversations",
                                   description="Simulate a caller or a subscriber end to end.")
    group = parser.add_subparsers(dest="simulate_command", metavar="WHAT")
    group.required = True
    call_cli.register(group)
    sms_cli.register(group)
    provisioning_cli.register(group)
