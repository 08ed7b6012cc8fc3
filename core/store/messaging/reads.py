"""Batched reads for the SMS keywords that only read (balance, tier, history, catalogue,
delivery): one query per kind of fact for every sender of an MO batch, not one per member.

Each method answers for many members at once and returns what the per-member repository
methods (``core.store.members_sql``, ``core.store.orders_sql``) would return for each of them,
as the same domain records, so the replies built from them are the same. Driver SQL (see
``core.store.messaging.base``): these run for every SMS.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from core.domain import Delivery, LedgerEntry, Member, Order, Reward
from core.store.messaging.base import QueriesBase, chunks, marks, py_time
from core.store.sums import out_of_range, sql_points_sum

_MEMBER_COLUMNS = ("msisdn, name, language, tier_code, tier_valid_until, warning_opt_out, "
                   "warning_channel, pin_hash IS NOT NULL, pin_locked_until, created_at, "
                   "granted_tier_code, granted_tier_until, line_status, subscriber_id, "
                   "delivery_address")


def _py_date(value: Any) -> date | None:
    """A stored date (SQLite gives the ISO text SQLAlchemy wrote) as a date."""
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(value)


def _py_time_or_none(value: Any) -> Any:
    return None if value is None else py_time(value)


class ReadQueries(QueriesBase):
    def members_by_msisdn(self, msisdns: Sequence[str]) -> dict[str, Member]:
        """msisdn -> the member, for the members among ``msisdns``: the one place the SMS
        channel decides who is a member (and in which language she is answered)."""
        found: dict[str, Member] = {}
        for chunk in chunks(list(dict.fromkeys(msisdns))):
            for (m, name, lang, tier, tier_until, opt_out, channel, has_pin, locked, created,
                 granted, granted_until, line_status, subscriber_id, address) in self._raw(
                    # A closed line is no member: the sender is told how to join, like a
                    # stranger.
                    f"SELECT {_MEMBER_COLUMNS} FROM members "
                    f"WHERE msisdn IN ({marks(len(chunk))}) AND line_status <> 'closed'",
                    tuple(chunk)):
                found[m] = Member(m, name, lang, tier, _py_date(tier_until), bool(opt_out),
                                  channel, bool(has_pin), _py_time_or_none(locked),
                                  py_time(created), granted, _py_date(granted_until),
                                  line_status, subscriber_id, address)
        return found

    def earned_points_by_member(self, msisdns: Sequence[str], since: date,
                                sources: Sequence[str]) -> dict[str, int]:
        """``earned_points`` of many members: points of lots from ``sources`` earned on or
        after ``since``. A member whose total is no real balance is left out (her own query
        raises ``AccountNeedsAttention``)."""
        out: dict[str, int] = {}
        kinds = list(sources)
        since_db = since.isoformat() if self.is_sqlite else since
        total = sql_points_sum(self.is_sqlite).format("amount")
        for chunk in chunks(list(dict.fromkeys(msisdns))):
            for m in chunk:
                out[m] = 0
            for m, points in self._raw(
                    f"SELECT msisdn, {total} FROM points_lots "
                    f"WHERE msisdn IN ({marks(len(chunk))}) AND earned_on >= ? "
                    f"AND source IN ({marks(len(kinds))}) GROUP BY msisdn",
                    (*chunk, since_db, *kinds)):
                if out_of_range(points):
                    del out[m]
                else:
                    out[m] = int(points or 0)
        return out

    def recent_history(self, msisdns: Sequence[str], limit: int
                       ) -> dict[str, list[LedgerEntry]]:
        """``history(msisdn, 0, limit)`` of many members: the newest ledger entries first."""
        out: dict[str, list[LedgerEntry]] = {}
        for chunk in chunks(list(dict.fromkeys(msisdns))):
            for m in chunk:
                out[m] = []
            for i, m, kind, amount, reason, channel, created, order_no in self._raw(
                    "SELECT id, msisdn, kind, amount, reason, channel, created_at, order_no "
                    "FROM (SELECT id, msisdn, kind, amount, reason, channel, created_at, "
                    "order_no, ROW_NUMBER() OVER (PARTITION BY msisdn "
                    "ORDER BY created_at DESC, id DESC) AS n FROM ledger "
                    f"WHERE msisdn IN ({marks(len(chunk))})) AS recent WHERE n <= ? "
                    "ORDER BY msisdn, n", (*chunk, limit)):
                out[m].append(LedgerEntry(i, m, kind, amount, reason, channel,
                                          py_time(created), order_no))
        return out

    def recent_orders(self, msisdns: Sequence[str], limit: int, kind: str | None = None
                      ) -> dict[str, list[Order]]:
        """``member_orders(msisdn, limit, kind)`` of many members, deliveries included:
        the newest orders first."""
        out: dict[str, list[Order]] = {}
        of_kind = " AND reward_kind = ?" if kind else ""
        for chunk in chunks(list(dict.fromkeys(msisdns))):
            for m in chunk:
                out[m] = []
            params: tuple[Any, ...] = (*chunk, kind, limit) if kind else (*chunk, limit)
            for row in self._raw(
                    "SELECT o.order_no, o.msisdn, o.reward_code, o.reward_kind, o.points, "
                    "o.status, o.channel, o.request_id, o.created_at, d.order_no, d.status, "
                    "d.courier, d.tracking_no, d.updated_at FROM ("
                    "SELECT *, ROW_NUMBER() OVER (PARTITION BY msisdn "
                    "ORDER BY created_at DESC, order_no DESC) AS n FROM orders "
                    f"WHERE msisdn IN ({marks(len(chunk))}){of_kind}) AS o "
                    "LEFT JOIN deliveries d ON d.order_no = o.order_no WHERE o.n <= ? "
                    "ORDER BY o.msisdn, o.n", params):
                (order_no, m, code, reward_kind, points, status, channel, request_id, created,
                 d_no, d_status, courier, tracking_no, updated) = row
                delivery = Delivery(d_no, d_status, courier, tracking_no, py_time(updated)) \
                    if d_no is not None else None
                out[m].append(Order(order_no, m, code, reward_kind, points, status, channel,
                                    request_id, py_time(created), delivery))
        return out

    def catalogue_rewards(self) -> list[Reward]:
        """``list_rewards()``: every reward, in catalogue order, with its tier prices (one
        statement: a row per reward and tier price)."""
        rows: list[tuple[tuple[Any, ...], list[tuple[str, int]]]] = []
        for *head, tier, price in self._raw(
                "SELECT r.code, r.name_zh, r.name_en, r.kind, r.points, r.stock, "
                "r.available_from, r.available_until, r.per_member_limit, r.sort_order, "
                "p.tier_code, p.points FROM rewards r "
                "LEFT JOIN reward_prices p ON p.reward_code = r.code "
                "ORDER BY r.sort_order, r.code, p.tier_code"):
            if not rows or rows[-1][0][0] != head[0]:
                rows.append((tuple(head), []))
            if tier is not None:
                rows[-1][1].append((tier, price))
        return [Reward(code, zh, en, kind, points, stock, _py_date(start), _py_date(end), limit,
                       order, tuple(prices))
                for (code, zh, en, kind, points, stock, start, end, limit, order), prices
                in rows]
