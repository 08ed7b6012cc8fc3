"""What the use cases need of the store about members and their points: members, PINs,
points lots, the ledger and its lot draws, balances, tier data and the ledger's invariants."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any, Protocol

from core.domain import LedgerEntry, LedgerProblem, Member, PointsLot


class MembersRepository(Protocol):
    """Members, their PINs and tier data, points lots, the ledger and balances."""

    def get_member(self, msisdn: str, *, for_update: bool = False,
                   include_closed: bool = False) -> Member | None:
        """The member on that number; a closed line is no member (None) unless
        ``include_closed``."""
        ...

    def retire_member(self, msisdn: str, now: datetime, fresh: dict[str, Any]) -> str:
        """Move the account on ``msisdn`` and all its rows to a new archive key (returned)
        and reset the number's row to ``fresh``: no points, orders, PIN or preferences."""
        ...

    def archived_keys(self, msisdn: str) -> list[str]:
        """The archive keys of the accounts once held on ``msisdn``, oldest first."""
        ...

    def member_pin(self, msisdn: str) -> tuple[str | None, int]:
        ...

    def upsert_members(self, rows: Sequence[dict[str, Any]], *,
                       existing: set[str] | None = None) -> tuple[int, int]:
        """Insert new members, update the given fields of existing ones. Returns (new, updated).
        ``existing``: the rows' numbers already stored, when the caller has just asked."""
        ...

    def subscriber_ids(self, msisdns: Iterable[str]) -> dict[str, str | None]:
        """Number -> stored subscriber id, for the stored members (closed lines too)."""
        ...

    def existing_msisdns(self, msisdns: Iterable[str]) -> set[str]:
        ...

    def update_member(self, msisdn: str, **fields: Any) -> None:
        ...

    def count_members(self) -> int:
        ...

    def list_members(self, limit: int = 100) -> list[Member]:
        ...

    def spendable_lots(self, msisdn: str, now: datetime) -> list[PointsLot]:
        ...

    def get_lots(self, lot_ids: Sequence[int]) -> list[PointsLot]:
        ...

    def add_lot(self, *, msisdn: str, amount: int, source: str, earned_on: date,
                expires_at: datetime, reference: str | None, now: datetime) -> int:
        ...

    def add_lots_bulk(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert many lots (remaining = amount); no ids come back, which keeps it fast."""
        ...

    def existing_references(self, references: Iterable[str]) -> set[str]:
        """References of imported rows already applied (credits and deductions alike)."""
        ...

    def imported_points(self, references: Iterable[str]
                        ) -> dict[str, tuple[str, int, str, date | None]]:
        """What was stored under each imported reference: (msisdn, points, source, earned_on);
        a deduction has its (negative) points taken and no date."""
        ...

    def take_from_lot(self, lot_id: int, points: int) -> None:
        """Move points out of (positive) or back into (negative) one lot, never below zero."""
        ...

    def balance_summary(self, msisdn: str, now: datetime) -> tuple[int, datetime | None, int]:
        """(spendable points, soonest expiry instant, points expiring then)."""
        ...

    def earned_points(self, msisdn: str, since: date, sources: Sequence[str]) -> int:
        ...

    def lapsed_lots(self, now: datetime, limit: int) -> list[PointsLot]:
        """Lots past their expiry that still hold points and were not expired yet."""
        ...

    def mark_lots_expired(self, lot_ids: Sequence[int]) -> None:
        ...

    def add_ledger(self, *, msisdn: str, kind: str, amount: int, reason: str, channel: str,
                   now: datetime, order_no: str | None = None,
                   draws: Sequence[tuple[int, int]] = (), reference: str | None = None) -> int:
        ...

    def add_ledger_bulk(self, rows: Sequence[dict[str, Any]],
                        draws: Sequence[Sequence[tuple[int, int]]] | None = None) -> None:
        """Insert many ledger entries; ``draws`` (per entry) needs their ids, so only then
        are ids asked back."""
        ...

    def ledger_draws_for_order(self, order_no: str, kind: str) -> list[tuple[int, int]]:
        ...

    def history(self, msisdn: str, offset: int, limit: int) -> list[LedgerEntry]:
        ...

    def ledger_problems(self) -> list[LedgerProblem]:
        """Every member: ledger sum = lot remainders; every lot: draws explain what it lost."""
        ...
