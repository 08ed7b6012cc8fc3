"""Fulfilment of service and voucher orders: the use cases behind the provisioning API's queue
(``ops/fulfilment.py`` POSTs) and its CSV fallback (``loyalty orders export --pending`` /
``loyalty import fulfilments``).

States: ``confirmed`` (queued) -> ``fulfilling`` (claimed, with a lease) -> ``fulfilled`` |
``failed``. A failed order is refunded to the lots it drew from, its stock returned and the
member told, in one transaction, under the order's row lock, and only from an open state, so a
refund never happens twice. Pure: no Twisted, no SQLAlchemy; nothing here commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from core.accounts import require_member
from core.domain import (
    FULFILLED_KINDS,
    Channel,
    DomainError,
    FulfilmentItem,
    InvalidInput,
    OrderStatus,
    UnknownOrder,
)
from core.import_csv import Rows
from core.messages import fulfil_done_message, fulfil_failed_message
from core.ports import UnitOfWork
from core.progress import StepProgress
from core.redemption import refund_order
from core.rules import ProgrammeRules
from core.service_desk import queue_sms

OPEN_STATES = (OrderStatus.CONFIRMED, OrderStatus.FULFILLING)
FULFIL_SMS_KIND = "fulfilment"

# Why an order failed, as the member is told (the template words it in their language).
REFUSED = "refused"  # the API (or the operator) refused it for good
NOT_APPLIED = "not_applied"  # the API could not be reached or kept failing


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    backoff_base_s: float
    backoff_cap_s: float

    def delay(self, attempts: int) -> timedelta:
        """The wait after the ``attempts``-th failed try: base * 2**(n-1), capped."""
        seconds = self.backoff_base_s * 2 ** max(0, min(attempts - 1, 30))
        return timedelta(seconds=min(self.backoff_cap_s, seconds))


@dataclass(frozen=True)
class Attempt:
    """What one POST came to: ``applied`` (2xx), ``refused`` (4xx) or ``error`` (5xx, timeout,
    connection); ``detail``: the API's reference when applied, else a short reason."""
    outcome: str
    detail: str = ""
    status: int | None = None


def request_body(item: FulfilmentItem) -> dict[str, object]:
    """What the provisioning API is told of one order (and what the CSV fallback lists)."""
    requested = item.requested_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return {"order_no": item.order_no, "msisdn": item.msisdn, "reward_code": item.reward_code,
            "kind": item.reward_kind, "quantity": item.quantity, "requested_at": requested}


def claim_fulfilments(uow: UnitOfWork, rules: ProgrammeRules, now: datetime, lease_s: float,
                      limit: int) -> list[FulfilmentItem]:
    """Due orders for this process to POST, each leased for ``lease_s``."""
    return uow.fulfilment.claim_fulfilments(now, now + timedelta(seconds=lease_s), limit)


def record_attempt(uow: UnitOfWork, rules: ProgrammeRules, item: FulfilmentItem,
                   attempt: Attempt, policy: RetryPolicy, now: datetime) -> str:
    """Apply one POST's outcome; returns what became of the order: ``fulfilled``,
    ``failed``, ``retry`` or ``stale`` (already finished elsewhere, or claimed again by
    another process meanwhile: its own POST decides)."""
    current = uow.fulfilment.get_fulfilment(item.order_no, for_update=True)
    if current is None or current.status != OrderStatus.FULFILLING:
        return "stale"
    if attempt.outcome == "applied":
        fulfil_order(uow, rules, item.order_no, attempt.detail or None, now)
        return "fulfilled"
    if attempt.outcome == "refused":
        reason = f"{attempt.status or ''} {attempt.detail}".strip()
        fail_order(uow, rules, item.order_no, REFUSED, reason, now)
        return "failed"
    if current.attempts != item.attempts:
        return "stale"  # our lease lapsed and another process holds the order now
    error = attempt.detail or "error"
    if current.attempts >= policy.max_attempts:
        fail_order(uow, rules, item.order_no, NOT_APPLIED,
                   f"gave up after {current.attempts} attempts: {error}", now)
        return "failed"
    uow.fulfilment.retry_fulfilment(item.order_no, now + policy.delay(current.attempts), error)
    return "retry"


def _open_order(uow: UnitOfWork, rules: ProgrammeRules, order_no: str):
    order = uow.orders.get_order(order_no, for_update=True)
    if order is None:
        raise UnknownOrder(order_no)
    if order.reward_kind not in FULFILLED_KINDS:
        raise InvalidInput(f"order {order_no} is a {order.reward_kind}, not applied by "
                           "fulfilment")
    require_member(uow, rules, order.msisdn, for_update=True)
    return order


def fulfil_order(uow: UnitOfWork, rules: ProgrammeRules, order_no: str, reference: str | None,
                 now: datetime) -> bool:
    """Mark an open order fulfilled and queue the "applied" SMS; False when it was no longer
    open (fulfilled or failed already: nothing changes)."""
    order = _open_order(uow, rules, order_no)
    if order.status not in OPEN_STATES:
        return False
    uow.fulfilment.finish_fulfilment(order_no, OrderStatus.FULFILLED, now, reference=reference)
    _tell(uow, rules, order, now, lambda name: fulfil_done_message(order, name, reference))
    return True


def fail_order(uow: UnitOfWork, rules: ProgrammeRules, order_no: str, reason: str, detail: str,
               now: datetime) -> bool:
    """Fail an open order: points back to its lots, stock back, ``failed`` with the reason,
    the failure SMS queued, all in this transaction. False when it was no longer open."""
    order = _open_order(uow, rules, order_no)
    if order.status not in OPEN_STATES:
        return False
    refunded = refund_order(uow, rules, order, now, channel=Channel.OPS,
                            reason=f"not applied {order.reward_code}")
    uow.fulfilment.finish_fulfilment(order_no, OrderStatus.FAILED, now,
                                     error=f"{reason}: {detail}" if detail else reason)
    _tell(uow, rules, order, now,
          lambda name: fulfil_failed_message(order, name, reason, refunded))
    return True


def _tell(uow: UnitOfWork, rules: ProgrammeRules, order, now: datetime, build) -> None:
    member = uow.members.get_member(order.msisdn)
    language = member.language if member else rules.programme.default_language
    reward = uow.orders.get_reward(order.reward_code)
    message = build(reward.name(language) if reward else order.reward_code)
    queue_sms(uow, rules, order.msisdn, now, kind=FULFIL_SMS_KIND, template=message.template,
              params=message.params, language=language,
              dedupe_key=f"{message.template}:{order.order_no}")


def pending_fulfilments(uow: UnitOfWork, rules: ProgrammeRules) -> list[FulfilmentItem]:
    return uow.fulfilment.pending_fulfilments()


def fulfilment_queue(uow: UnitOfWork, rules: ProgrammeRules) -> tuple[int, datetime | None]:
    """(orders waiting or in flight, the oldest one's order time): for the metrics."""
    return uow.fulfilment.fulfilment_queue()


def apply_result(uow: UnitOfWork, rules: ProgrammeRules, order_no: str, result: str,
                 note: str, now: datetime) -> bool:
    """One row of a fulfilment file: ``fulfilled`` (note: the reference) or ``failed`` (note:
    the reason); False when the order was settled already (a file imported twice)."""
    if result == "fulfilled":
        return fulfil_order(uow, rules, order_no, note or None, now)
    if result == "failed":
        return fail_order(uow, rules, order_no, REFUSED, note, now)
    raise InvalidInput(f"result must be fulfilled or failed, not {result!r}")


@dataclass(frozen=True)
class FulfilmentImport:
    """What ``loyalty import fulfilments`` did: rows read, orders fulfilled and failed, rows
    whose order was settled already, and the bad rows (line, problem), which changed nothing."""
    rows: int
    fulfilled: int
    failed: int
    settled: int
    errors: tuple[tuple[int, str], ...]


def import_fulfilments(uow: UnitOfWork, rules: ProgrammeRules, path: str | Path, now: datetime,
                       progress: StepProgress | None = None, *,
                       encoding: str | None = None) -> FulfilmentImport:
    """Apply the operator's results (columns order_no, result, reference or reason). Unlike
    the other imports, each row stands alone: a bad row is reported with its line number and
    the others still apply (each order is settled, refunded and told on its own), so a file
    imported again only reports its orders as settled."""
    rows = Rows("fulfilments", path, encoding)
    counts = {"fulfilled": 0, "failed": 0, "settled": 0}
    errors: list[tuple[int, str]] = []
    for done, (line, row) in enumerate(rows, 1):
        result = row.get("result", "").lower()
        note = row.get("reference" if result == "fulfilled" else "reason", "")
        try:
            with uow.savepoint():
                changed = apply_result(uow, rules, row.get("order_no", ""), result, note, now)
            counts[result if changed else "settled"] += 1
        except UnknownOrder as exc:
            errors.append((line, f"unknown order {exc}"))
        except DomainError as exc:
            errors.append((line, str(exc)))
        if progress and done % 200 == 0:
            progress("writing", done, len(rows))
    if progress:
        progress("writing", len(rows), len(rows))
    return FulfilmentImport(len(rows), counts["fulfilled"], counts["failed"], counts["settled"],
                            tuple(errors))
