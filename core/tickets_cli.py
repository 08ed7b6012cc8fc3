"""``loyalty tickets``: list, show and resolve make-up claims and complaints."""

from __future__ import annotations

import json
from typing import Any

from core.domain import Ticket, TicketKind, mask_msisdn
from core.tickets import list_tickets, resolve_ticket, show_ticket


def register(subparsers) -> None:
    tickets = subparsers.add_parser("tickets", help="make-up claims and complaints",
                                    description=__doc__).add_subparsers(
        dest="tickets_command", required=True)
    listing = tickets.add_parser("list", help="list tickets, newest first")
    listing.add_argument("--open", action="store_true", help="only tickets not resolved yet")
    listing.add_argument("--kind", choices=("claim", "complaint"),
                         help="only make-up claims or only complaints")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=cmd_list)
    show = tickets.add_parser("show", help="one ticket, with its recording's path")
    show.add_argument("ref")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=cmd_show)
    resolve = tickets.add_parser("resolve", help="close a ticket and text the member the outcome")
    resolve.add_argument("ref")
    resolve.add_argument("--outcome", required=True, metavar="TEXT",
                         help="what was decided, as the member will read it")
    resolve.add_argument("--credit", type=int, metavar="POINTS",
                         help="points to credit for a make-up claim (once)")
    resolve.set_defaults(func=cmd_resolve)


_KINDS = {"claim": TicketKind.MAKEUP, "complaint": TicketKind.COMPLAINT}


def cmd_list(ctx: Any) -> int:
    from core.cli import to_jsonable

    kind = _KINDS[ctx.args.kind] if ctx.args.kind else None
    found = ctx.run(list_tickets, open_only=ctx.args.open, kind=kind, write=False)
    if ctx.args.json:
        print(json.dumps(to_jsonable(found), ensure_ascii=False, indent=2))
        return 0
    for t in found:
        print(f"{t.ref:<16} {t.kind:<9} {t.status:<8} {mask_msisdn(t.msisdn):<14} "
              f"{t.created_at:%Y-%m-%d %H:%M}  {t.text[:40]!r}")
    print(f"{len(found)} ticket(s)")
    return 0


def describe(t: Ticket) -> list[str]:
    """The lines ``tickets show`` prints."""
    lines = [f"{t.ref}  {t.kind}  {t.status}  via {t.channel}",
             f"  member     {t.msisdn}",
             f"  created    {t.created_at:%Y-%m-%d %H:%M} UTC",
             f"  text       {t.text or '-'}"]
    if t.order_no:
        lines.append(f"  order      {t.order_no}")
    if t.recording_path:
        lines.append(f"  recording  {t.recording_path}")
    if t.resolved_at:
        lines.append(f"  resolved   {t.resolved_at:%Y-%m-%d %H:%M} UTC: {t.outcome}")
    if t.credit_points:
        lines.append(f"  credited   {t.credit_points} points")
    return lines


def cmd_show(ctx: Any) -> int:
    from core.cli import to_jsonable

    ticket = ctx.run(show_ticket, ctx.args.ref, write=False)
    if ctx.args.json:
        print(json.dumps(to_jsonable(ticket), ensure_ascii=False, indent=2))
    else:
        print("\n".join(describe(ticket)))
    return 0


def cmd_resolve(ctx: Any) -> int:
    ticket = ctx.run(resolve_ticket, ctx.args.ref, ctx.args.outcome, ctx.now(),
                     credit=ctx.args.credit)
    credited = f", {ticket.credit_points} points credited" if ticket.credit_points else ""
    print(f"ticket {ticket.ref} resolved{credited}; the member is told by SMS")
    return 0
