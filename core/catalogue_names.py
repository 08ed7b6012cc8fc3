"""The reward and courier codes the IVR names with recorded prompts (``reward_<code>``,
``courier_<code>``; ids made by ``prompts.catalogue_prompts``).

- ``spoken_codes(uow, rules, now) -> SpokenCodes``: the use case ``loyalty prompts check`` and
  the ops console call: the codes of the rewards available today (``core.redemption.
  is_available``), and every courier known, configured (``[couriers]``) or named by a delivery.
- ``courier_code(name, couriers)``: the code a delivery's courier column stands for.
- ``courier_names(texts, couriers, language)``: the names an SMS reply gives those couriers.

Pure: no Twisted, no SQLAlchemy; read-only, never commits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from core.config import CourierConfig
from core.ports import UnitOfWork
from core.redemption import is_available
from core.rules import ProgrammeRules


@dataclass(frozen=True)
class SpokenCodes:
    """Codes that need a name recording, each list sorted and without repeats."""

    reward_codes: tuple[str, ...]
    courier_codes: tuple[str, ...]


def courier_code(name: str | None, couriers: Iterable[CourierConfig]) -> str | None:
    """The configured code a delivery's courier stands for, matched on the code or either
    name without regard to case (``"SF Express"`` -> ``SF``); else the name itself, trimmed
    (an unconfigured courier is still a courier); None when there is none."""
    text = (name or "").strip()
    if not text:
        return None
    folded = text.casefold()
    for courier in couriers:
        if folded in (n.casefold() for n in courier.names()):
            return courier.code
    return text


def courier_names(texts: Iterable[str | None], couriers: Iterable[CourierConfig],
                  language: str) -> dict[str, str]:
    """Each delivery's courier text -> what a member is told in ``language``: the configured
    courier's name (matched as ``courier_code`` matches), else the text as stored, trimmed.
    A blank text names no courier and is left out."""
    couriers = tuple(couriers)
    by_code = {c.code: c for c in couriers}
    out: dict[str, str] = {}
    for text in texts:
        code = courier_code(text, couriers)
        if code is not None and text not in out:
            known = by_code.get(code)
            out[text] = known.name(language) if known else code
    return out


def spoken_codes(uow: UnitOfWork, rules: ProgrammeRules, now: datetime) -> SpokenCodes:
    """The active rewards' codes and the known couriers' codes (configured, and seen in
    deliveries)."""
    today = rules.today(now)
    rewards = sorted({r.code for r in uow.orders.list_rewards() if is_available(r, today)})
    couriers = {c.code for c in rules.couriers}
    for name in uow.orders.courier_names():
        code = courier_code(name, rules.couriers)
        if code is not None:
            couriers.add(code)
    return SpokenCodes(tuple(rewards), tuple(sorted(couriers)))
