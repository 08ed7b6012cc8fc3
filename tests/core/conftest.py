"""Fixtures of the import, tier-grant and account-limit tests: two members imported from CSV,
and the real `loyalty` command on the test database."""

import pytest

from core.cli import main as loyalty
from core.imports import import_members
from tests.core.import_kit import MEMBERS, write


@pytest.fixture
def members(run, now, tmp_path):
    run(import_members, write(tmp_path, "members.csv", MEMBERS), now)


@pytest.fixture
def cli(monkeypatch, database_url):
    monkeypatch.setenv("LOYALTY_DATABASE_URL", database_url)
    return loyalty
