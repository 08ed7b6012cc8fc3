"""The ``loyalty`` ops command. Each package adds its own subcommands through ``register``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from datetime import date, datetime
from typing import Any

import bench.cli
import core.fulfilment_cli
import core.jobs.cli
import core.queues
import core.tickets_cli
import harness.cli
import prompts.cli
from core.cli_errors import explain
from core.clock import WALL_CLOCK, utc_now
from core.config import Config, load_config
from core.domain import AccountNeedsAttention, mask_msisdn
from core.ports import UnitOfWork
from core.rules import ProgrammeRules
from core.store import Store

# The modules that add their own subcommands, each through ``register(subparsers)``.
SUBCOMMAND_MODULES = (prompts.cli, harness.cli, core.jobs.cli, bench.cli, core.queues,
                      core.tickets_cli, core.fulfilment_cli)


class Context:
    """What a subcommand needs: config, store and rules, built on first use."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._config: Config | None = None
        self._store: Store | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(getattr(self.args, "config", None))
        return self._config

    @property
    def rules(self) -> ProgrammeRules:
        return ProgrammeRules.from_config(self.config)

    @property
    def store(self) -> Store:
        if self._store is None:
            db = self.config.database
            self._store = Store(db.url, pool_size=db.pool_size, busy_timeout_ms=db.busy_timeout_ms)
        return self._store

    def now(self) -> datetime:
        return utc_now(WALL_CLOCK)

    def run(self, use_case, *args: Any, write: bool = True, **kwargs: Any) -> Any:
        """Run a use case in its own unit of work, on a schema that is up to date."""
        self.store.check_schema()
        with self.store.unit_of_work(write=write) as uow:
            return use_case(uow, self.rules, *args, **kwargs)


def to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


# --- core subcommands ---------------------------------------------------------------------


def cmd_db_upgrade(ctx: Context) -> int:
    before, after = ctx.store.upgrade()
    print(f"database at {after}" + (f" (was {before or 'empty'})" if before != after else ""))
    return 0


def cmd_demo(ctx: Context) -> int:
    from core.demo import DEMO_MEMBERS, DEMO_PIN, load_demo

    ctx.store.check_schema()
    with ctx.store.unit_of_work() as uow:
        if ctx.args.if_empty and uow.members.count_members():
            print("demo: database already has members; nothing loaded")
            return 0
        loaded = all(uow.members.get_member(msisdn) for msisdn, _, _ in DEMO_MEMBERS)
    members = ctx.run(load_demo, ctx.now())
    if loaded:
        print(f"demo data already loaded; nothing changed (the demo members' service PIN "
              f"was {DEMO_PIN})")
    else:
        print(f"demo data loaded; every demo member's service PIN is {DEMO_PIN}")
    for m in members:
        print(f"  {m.msisdn}  {m.name:<12} {m.language}")
    return 0


def cmd_import(ctx: Context) -> int:
    from core.import_csv import read_text
    from core.imports import IMPORTERS
    from core.progress import ProgressReporter

    # Refusals (ImportFailed, an unreadable file) are reported by core.cli_errors.
    read_text(ctx.args.file, ctx.args.encoding)  # a wrong path fails before the database
    if ctx.args.kind == "fulfilments":
        return _import_fulfilments(ctx)
    report = ctx.run(IMPORTERS[ctx.args.kind], ctx.args.file, ctx.now(),
                     progress=ProgressReporter(f"import {ctx.args.kind}"),
                     encoding=ctx.args.encoding)
    print(f"{report.kind}: {report.rows} rows, {report.created} new, {report.updated} updated, "
          f"{report.skipped} already imported"
          + (f", {len(report.problems)} refused" if report.problems else ""))
    # Imports that apply the good rows (line-status) list the refused ones and fail.
    for line, message in report.problems:
        print(f"  line {line}: {message}", file=sys.stderr)
    return 1 if report.problems else 0


def _account(uow: UnitOfWork, rules: ProgrammeRules, key: str):
    """The account ops asked for: a number (closed lines too) or an archive key (R000001)."""
    from core.domain import UnknownMember

    key = key.strip().upper()
    if not (key.startswith("R") and key[1:].isdigit()):
        key = rules.numbering.normalise(key)
    member = uow.members.get_member(key, include_closed=True)
    if member is None:
        raise UnknownMember(key)
    return member


def _line(uow: UnitOfWork, member) -> dict[str, Any]:
    return {"line_status": member.line_status, "subscriber_id": member.subscriber_id,
            "delivery_address": member.delivery_address,
            "archived_accounts": uow.members.archived_keys(member.msisdn)}


def _import_fulfilments(ctx: Context) -> int:
    from core.fulfilment import import_fulfilments
    from core.progress import ProgressReporter

    report = ctx.run(import_fulfilments, ctx.args.file, ctx.now(),
                     progress=ProgressReporter("import fulfilments"),
                     encoding=ctx.args.encoding)
    for line, problem in report.errors:
        print(f"{ctx.args.file}:{line}: {problem}", file=sys.stderr)
    print(f"fulfilments: {report.rows} rows, {report.fulfilled} fulfilled, {report.failed} "
          f"failed (refunded), {report.settled} settled already, {len(report.errors)} refused")
    return 1 if report.errors else 0


def member_summary(uow: UnitOfWork, rules: ProgrammeRules, msisdn: str,
                   now: datetime) -> dict[str, Any]:
    from core.accounts import balance, tier_status
    from core.redemption import recent_orders
    from core.tickets import member_tickets

    member = _account(uow, rules, msisdn)
    if member.line_status == "closed":  # closed or retired: what the account holds, as it is
        points, _, _ = uow.members.balance_summary(member.msisdn, now)
        return {"msisdn": member.msisdn, "name": member.name, "language": member.language,
                **_line(uow, member), "balance": points,
                "orders": [{"order_no": o.order_no, "reward_code": o.reward_code,
                            "points": o.points, "status": o.status}
                           for o in uow.orders.member_orders(member.msisdn, 10)]}
    try:
        tier = tier_status(uow, rules, member.msisdn, now)
        bal = balance(uow, rules, member.msisdn, now)
    except AccountNeedsAttention as broken:
        return {"msisdn": member.msisdn, "name": member.name, "language": member.language,
                "needs_attention": broken.what}
    return {
        "msisdn": member.msisdn, "name": member.name, "language": member.language,
        **_line(uow, member),
        "tier": {"code": tier.code, "name": tier.name_en if member.language == "en"
                 else tier.name_zh, "valid_until": tier.valid_until,
                 "points_to_next": tier.points_to_next, "next": tier.next_code},
        "balance": bal.points,
        "next_expiry": {"points": bal.next_expiry_points, "date": bal.next_expiry_date},
        "warning_opt_out": member.warning_opt_out, "warning_channel": member.warning_channel,
        "auto_redeem": uow.jobs.auto_redemption_of(member.msisdn),
        "pin_set": member.has_pin, "pin_locked_until": member.pin_locked_until,
        "orders": [{"order_no": o.order_no, "reward_code": o.reward_code, "points": o.points,
                    "status": o.status, "created_at": o.created_at,
                    "delivery_status": o.delivery.status if o.delivery else None,
                    "courier": o.delivery.courier if o.delivery else None,
                    "tracking_no": o.delivery.tracking_no if o.delivery else None}
                   for o in recent_orders(uow, rules, member.msisdn)],
        "tickets": [{"ref": t.ref, "kind": t.kind, "status": t.status, "order_no": t.order_no,
                     "text": t.text, "created_at": t.created_at, "outcome": t.outcome,
                     "credit_points": t.credit_points}
                    for t in member_tickets(uow, rules, member.msisdn)],
    }


def cmd_member_show(ctx: Context) -> int:
    summary = to_jsonable(ctx.run(member_summary, ctx.args.msisdn, ctx.now(), write=False))
    if ctx.args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
        return 1 if "needs_attention" in summary else 0
    if "needs_attention" in summary:
        print(f"{summary['msisdn']}  {summary['name']}  ({summary['language']})")
        print(f"  ACCOUNT NEEDS ATTENTION: {summary['needs_attention']}")
        print("  (balance and tier cannot be shown; `loyalty check ledger` lists the problems)")
        return 1
    print(f"{summary['msisdn']}  {summary['name']}  ({summary['language']})")
    print(f"  line     {summary['line_status']}"
          + (f", subscriber {summary['subscriber_id']}" if summary["subscriber_id"] else "")
          + (f"; earlier accounts {', '.join(summary['archived_accounts'])}"
             if summary["archived_accounts"] else ""))
    if summary["line_status"] == "closed":
        print(f"  balance  {summary['balance']} points (closed: not shown to anyone)")
        for o in summary["orders"]:
            print(f"  order    {o['order_no']} {o['reward_code']} {o['points']} pts {o['status']}")
        return 0
    tier = summary["tier"]
    print(f"  tier     {tier['name']} until {tier['valid_until']}, "
          f"{tier['points_to_next']} points to {tier['next'] or '-'}")
    expiry = summary["next_expiry"]
    print(f"  balance  {summary['balance']} points"
          + (f", {expiry['points']} good until {expiry['date']}" if expiry["date"] else ""))
    for o in summary["orders"]:
        print(f"  order    {o['order_no']} {o['reward_code']} {o['points']} pts {o['status']}"
              + (f" delivery {o['delivery_status']}" if o["delivery_status"] else ""))
    for t in summary["tickets"]:
        print(f"  ticket   {t['ref']} {t['kind']} {t['status']}"
              + (f" order {t['order_no']}" if t["order_no"] else ""))
    return 0


def cmd_member_set(ctx: Context) -> int:
    from core.preferences import set_preferences

    a = ctx.args
    if a.warnings is None and a.warning_channel is None and a.language is None \
            and a.auto_redeem is None:
        print("member set: nothing to change (see --help)", file=sys.stderr)
        return 1
    prefs = ctx.run(set_preferences, ctx.rules.numbering.normalise(a.msisdn), ctx.now(),
                    warnings=None if a.warnings is None else a.warnings == "on",
                    warning_channel=a.warning_channel, language=a.language,
                    auto_redeem=a.auto_redeem)
    print(f"{mask_msisdn(prefs.msisdn)}: language {prefs.language}, warnings "
          f"{'on' if prefs.warnings_on else 'off'} by {prefs.warning_channel}, "
          f"monthly automatic redemption {prefs.auto_reward_code or 'off'}")
    return 0


def cmd_order_cancel(ctx: Context) -> int:
    from core.redemption import cancel_order

    order = ctx.run(cancel_order, ctx.args.order_no, ctx.now())
    print(f"order {order.order_no} cancelled; {order.points} points refunded")
    return 0


def cmd_check_ledger(ctx: Context) -> int:
    from core.accounts import check_ledger

    problems = ctx.run(check_ledger, write=False)
    for p in problems:
        print(f"{p.msisdn or '-'}: {p.what}")
    print("ledger consistent" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loyalty", description=__doc__)
    parser.add_argument("--config", help="config file (default: $LOYALTY_CONFIG or the default)")
    sub = parser.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db", required=True)
    db.add_parser("upgrade", help="create or upgrade the schema").set_defaults(func=cmd_db_upgrade)

    demo = sub.add_parser("demo", help="load the demo data set and print its members")
    demo.add_argument("--if-empty", action="store_true", help="only when there are no members")
    demo.set_defaults(func=cmd_demo)

    imp = sub.add_parser("import", help="import a CSV file (whole file or nothing; "
                                        "line-status and fulfilments: row by row)")
    imp.add_argument("kind", choices=("members", "points", "rewards", "deliveries",
                                      "line-status", "fulfilments"))
    imp.add_argument("file")
    imp.add_argument("--encoding", metavar="NAME",
                     help="the file's encoding (default: UTF-8 if it is, else GB18030)")
    imp.set_defaults(func=cmd_import)

    member = sub.add_parser("member", help="members").add_subparsers(dest="member", required=True)
    show = member.add_parser("show", help="show one member")
    show.add_argument("msisdn")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=cmd_member_show)
    mset = member.add_parser("set", help="change a member's warnings, language or monthly "
                                         "automatic redemption")
    mset.add_argument("msisdn")
    mset.add_argument("--warnings", choices=("on", "off"), help="points expiry warnings")
    mset.add_argument("--warning-channel", choices=("sms", "voice"),
                      help="expiry warnings by SMS or by a voice call")
    mset.add_argument("--language", choices=("zh", "en"))
    mset.add_argument("--auto-redeem", metavar="CODE|off",
                      help="redeem this reward every month, or off")
    mset.set_defaults(func=cmd_member_set)

    order = sub.add_parser("order", help="orders").add_subparsers(dest="order", required=True)
    cancel = order.add_parser("cancel", help="cancel a redemption and refund its points")
    cancel.add_argument("order_no")
    cancel.set_defaults(func=cmd_order_cancel)

    check = sub.add_parser("check", help="consistency checks").add_subparsers(
        dest="check", required=True)
    check.add_parser("ledger", help="check the ledger invariant for every member").set_defaults(
        func=cmd_check_ledger)

    for module in SUBCOMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ctx = Context(args)
    try:
        return args.func(ctx) or 0
    except (Exception, KeyboardInterrupt) as exc:
        # Expected failures (see core.cli_errors) are one line for every subcommand; the
        # rest are bugs and keep their traceback.
        failure = explain(exc)
        if failure is None:
            raise
        if failure.message:
            print(failure.message, file=sys.stderr)
        return failure.status


if __name__ == "__main__":
    sys.exit(main())
