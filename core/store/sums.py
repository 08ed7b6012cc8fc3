"""Sums of points that cannot fail, whatever a broken upstream system wrote into the lots.

SQLite's ``SUM`` raises "integer overflow" once a total passes 64 bits, which would break every
query touching the member, and any query over all members. Summed as REAL it never fails, and
is exact far beyond any real balance (up to 2**53). PostgreSQL's ``SUM`` widens (integer
to bigint, bigint to numeric) and cannot overflow. A total beyond ``POINTS_CEILING`` is no
real balance: the member's account needs attention.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Float, cast, func

from core.config_values import POINTS_CEILING
from core.domain import AccountNeedsAttention


def points_sum(column: Any, is_sqlite: bool) -> Any:
    """``SUM(column)`` that cannot overflow (NULL over no rows, as SUM)."""
    return func.sum(cast(column, Float)) if is_sqlite else func.sum(column)


def sql_points_sum(is_sqlite: bool) -> str:
    """The same for hand-written SQL: ``{sum}(remaining)``."""
    return "SUM(CAST({} AS REAL))" if is_sqlite else "SUM({})"


def out_of_range(points: Any) -> bool:
    return points is not None and abs(points) > POINTS_CEILING


def checked_points(msisdn: str, points: Any) -> int:
    """A member's total as an int, or AccountNeedsAttention when no real balance is that big."""
    if out_of_range(points):
        raise AccountNeedsAttention(
            msisdn, f"stored points add up to {int(points)}, more than any balance can hold "
            f"({POINTS_CEILING}); check the points lots written for this member")
    return int(points or 0)
