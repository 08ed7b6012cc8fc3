"""Many redemptions at once for one member whose balance covers exactly N of them."""

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import pytest

from core.accounts import balance, credit_points
from core.cli import main as loyalty
from core.domain import DomainError
from core.redemption import redeem
from tests.core.helpers import add_member, add_reward

M = "13800138000"
PRICE, AFFORDABLE, STOCK = 100, 6, 50


@pytest.fixture
def funded(store, run, now):
    add_member(store, M)
    # Several lots with different expiries, so debits cross lot boundaries.
    for i, points in enumerate((250, 150, 200)):
        run(credit_points, M, points, "bill", date(2024 + i, 5, 1), now, reference=f"lot{i}")
    add_reward(store, "G01", kind="gift", points=PRICE, stock=STOCK)


def assert_ledger_checks(monkeypatch, database_url, capsys):
    monkeypatch.setenv("LOYALTY_DATABASE_URL", database_url)
    assert loyalty(["check", "ledger"]) == 0
    assert "ledger consistent" in capsys.readouterr().out


def test_threads_cannot_overspend(store, run, now, funded, monkeypatch, database_url, capsys):
    def attempt(i):
        try:
            with store.unit_of_work() as uow:
                from core.config import load_config
                from core.rules import ProgrammeRules
                config = load_config(environ={})
                redeem(uow, ProgrammeRules(config.programme, config.tiers), M, "G01", "ivr",
                       f"t{i}", now)
            return True
        except DomainError:
            return False

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(attempt, range(20)))
    assert results.count(True) == AFFORDABLE
    assert run(balance, M, now).points == 0
    with store.unit_of_work() as uow:
        assert uow.orders.get_reward("G01").stock == STOCK - AFFORDABLE
    assert_ledger_checks(monkeypatch, database_url, capsys)


def test_processes_cannot_overspend(store, run, now, funded, monkeypatch, database_url, capsys):
    procs = [subprocess.Popen([sys.executable, "-m", "tests.core.redeem_worker", database_url,
                               f"p{n}", "5"], stdout=subprocess.PIPE, text=True)
             for n in range(4)]
    outcomes = [tuple(map(int, p.communicate(timeout=120)[0].split())) for p in procs]
    assert sum(ok for ok, _ in outcomes) == AFFORDABLE
    assert sum(failed for _, failed in outcomes) == 20 - AFFORDABLE
    assert run(balance, M, now).points == 0
    with store.unit_of_work() as uow:
        assert uow.orders.get_reward("G01").stock == STOCK - AFFORDABLE
    assert_ledger_checks(monkeypatch, database_url, capsys)


def test_the_last_items_go_to_as_many_members_as_there_are_items(store, run, now, monkeypatch,
                                                                  database_url, capsys):
    """Eight members race for a gift with three left: three orders, five told it is out of
    stock with their points untouched, none left, the ledger whole."""
    from core.config import load_config
    from core.domain import OutOfStock
    from core.rules import ProgrammeRules

    config = load_config(environ={})
    rules = ProgrammeRules(config.programme, config.tiers)
    members = [f"1390013{n:04d}" for n in range(8)]
    for m in members:
        add_member(store, m)
        run(credit_points, m, 2 * PRICE, "bill", date(2026, 5, 1), now, reference=f"lot-{m}")
    add_reward(store, "G09", kind="gift", points=PRICE, stock=3)

    def attempt(m: str) -> str:
        try:
            with store.unit_of_work() as uow:
                return redeem(uow, rules, m, "G09", "sms", f"race-{m}", now).order_no
        except OutOfStock:
            return "out of stock"

    with ThreadPoolExecutor(max_workers=8) as pool:
        told = dict(zip(members, pool.map(attempt, members), strict=True))
    winners = [m for m, t in told.items() if t != "out of stock"]
    assert len(winners) == 3 and len({told[m] for m in winners}) == 3
    for m in members:
        assert run(balance, m, now).points == (PRICE if m in winners else 2 * PRICE)
    with store.unit_of_work() as uow:
        assert uow.orders.get_reward("G09").stock == 0
        assert sum(uow.orders.count_orders(m, "G09") for m in members) == 3
    assert_ledger_checks(monkeypatch, database_url, capsys)
