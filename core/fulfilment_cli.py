"""``loyalty orders export --pending``: the CSV fallback of fulfilment when there is no
provisioning API (``fulfilment.url`` empty) or it is down for long. The operator applies the
orders by hand and imports the results with ``loyalty import fulfilments FILE.csv``.

The export carries full numbers: the operator needs them to apply the rewards. It is written
to a file (or standard output), never to the logs."""

from __future__ import annotations

import csv
import sys
from typing import Any

EXPORT_COLUMNS = ("order_no", "msisdn", "reward_code", "kind", "quantity", "requested_at")


def cmd_orders_export(ctx: Any) -> int:
    from core.fulfilment import pending_fulfilments, request_body

    items = ctx.run(pending_fulfilments, write=False)
    out = open(ctx.args.output, "w", newline="", encoding="utf-8") if ctx.args.output \
        else sys.stdout
    try:
        writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for item in items:
            writer.writerow(request_body(item))
    finally:
        if out is not sys.stdout:
            out.close()
    if ctx.args.output:
        print(f"{len(items)} order(s) awaiting fulfilment written to {ctx.args.output}; "
              f"import the results with `loyalty import fulfilments FILE.csv` (columns "
              f"order_no, result fulfilled|failed, reference or reason)")
    return 0


def register(subparsers: Any) -> None:
    orders = subparsers.add_parser("orders", help="service and voucher orders awaiting "
                                                  "fulfilment (the CSV fallback)")
    group = orders.add_subparsers(dest="orders_command", required=True)
    export = group.add_parser("export", help="write a CSV of the orders to apply by hand")
    export.add_argument("--pending", action="store_true", required=True,
                        help="orders not yet fulfilled or failed")
    export.add_argument("--output", metavar="FILE.csv", help="default: standard output")
    export.set_defaults(func=cmd_orders_export)
