"""Run in a separate process by the concurrency test: try redemptions, print the outcomes."""

import sys
from datetime import UTC, datetime

from core.config import load_config
from core.domain import DomainError
from core.redemption import redeem
from core.rules import ProgrammeRules
from core.store import Store


def main(url: str, tag: str, attempts: int) -> None:
    config = load_config(environ={})
    rules = ProgrammeRules(config.programme, config.tiers)
    store = Store(url)
    ok = failed = 0
    for i in range(attempts):
        try:
            with store.unit_of_work() as uow:
                redeem(uow, rules, "13800138000", "G01", "sms", f"{tag}-{i}",
                       datetime(2026, 11, 22, 4, tzinfo=UTC))
            ok += 1
        except DomainError:
            failed += 1
    print(ok, failed)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
