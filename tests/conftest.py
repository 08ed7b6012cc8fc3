"""Shared fixtures: a real database per test (SQLite file, and PostgreSQL when
LOYALTY_TEST_DATABASE_URL is set), the default programme rules and fixed instants."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, text

from core.config import load_config
from core.rules import ProgrammeRules
from core.store import Store

PG_URL = os.environ.get("LOYALTY_TEST_DATABASE_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


def make_database_url(backend: str, tmp_path) -> str:
    """A fresh, migrated database: a SQLite file, or a private PostgreSQL schema."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/loyalty.sqlite3"
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    admin.dispose()
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{schema}"


def drop_database(url: str) -> None:
    if "search_path" in url:
        schema = url.rsplit("%3D", 1)[1]
        admin = create_engine(PG_URL)
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request, tmp_path):
    url = make_database_url(request.param, tmp_path)
    store = Store(url)
    store.upgrade()
    store.dispose()
    yield url
    drop_database(url)


@pytest.fixture
def store(database_url):
    s = Store(database_url)
    yield s
    s.dispose()


@pytest.fixture(scope="session")
def config():
    return load_config(environ={})


@pytest.fixture(scope="session")
def rules(config):
    return ProgrammeRules(config.programme, config.tiers)


@pytest.fixture
def now():
    return datetime(2026, 11, 22, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai


@pytest.fixture
def run(store, rules):
    """Call a use case in its own unit of work, as the channels do: committed when it
    returns, rolled back when it raises."""
    def _run(use_case, *args, **kwargs):
        with store.unit_of_work() as uow:
            return use_case(uow, rules, *args, **kwargs)
    return _run
