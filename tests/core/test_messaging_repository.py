"""The SQL messaging repository does what the core's Protocol for it says."""

from __future__ import annotations

import inspect

from core.messaging.repository import MessagingRepository
from core.store.messaging import SqlMessaging


def public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(member) for name, member in inspect.getmembers(cls)
            if inspect.isfunction(member) and not name.startswith("_")}


def test_the_store_implements_every_method_of_the_protocol_with_its_signature():
    wanted = public_methods(MessagingRepository)
    given = public_methods(SqlMessaging)
    assert wanted, "the Protocol lists the repository's methods"
    assert {name: given.get(name) for name in wanted} == wanted


def test_the_unit_of_work_exposes_the_repository(store):
    with store.unit_of_work() as uow:
        assert isinstance(uow.messaging, SqlMessaging)
        assert uow.messaging.outbox_depth() == 0
