"""The SQL store implements the protocols the core's use cases are typed with: every method a
protocol names exists on the store with the same parameters, so a use case written against
``core.ports`` runs on ``core.store``."""

from __future__ import annotations

import inspect

import pytest

from core.messaging.repository import MessagingRepository
from core.ports import (
    CallsRepository,
    FulfilmentRepository,
    JobsRepository,
    MembersRepository,
    OrdersRepository,
    OutboxRepository,
    TicketsRepository,
    UnitOfWork,
)
from core.store.calls_sql import SqlCalls, SqlTickets
from core.store.fulfilment_sql import SqlFulfilment
from core.store.jobs_sql import SqlJobs
from core.store.members_sql import SqlMembers
from core.store.messaging import SqlMessaging
from core.store.orders_sql import SqlOrders
from core.store.outbox_sql import SqlOutbox
from core.store.uow import SqlUnitOfWork

PAIRS = [(MembersRepository, SqlMembers), (OrdersRepository, SqlOrders),
         (JobsRepository, SqlJobs), (CallsRepository, SqlCalls),
         (TicketsRepository, SqlTickets), (OutboxRepository, SqlOutbox),
         (MessagingRepository, SqlMessaging), (FulfilmentRepository, SqlFulfilment),
         (UnitOfWork, SqlUnitOfWork)]


def protocol_methods(protocol: type) -> list[str]:
    return sorted(name for name, value in vars(protocol).items()
                  if callable(value) and not name.startswith("_"))


def repositories(protocol: type) -> dict[str, type]:
    """The protocol's read-only attributes: area name -> the repository protocol."""
    return {name: inspect.get_annotations(value.fget, eval_str=True)["return"]
            for name, value in vars(protocol).items() if isinstance(value, property)}


def parameters(function) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize(("protocol", "implementation"), PAIRS,
                         ids=[p.__name__ for p, _ in PAIRS])
def test_the_store_has_every_method_of_the_protocol(protocol, implementation):
    assert protocol_methods(protocol)
    for name in protocol_methods(protocol):
        assert parameters(getattr(implementation, name)) == \
            parameters(getattr(protocol, name)), name


def test_the_unit_of_work_has_a_repository_for_every_area(store):
    with store.unit_of_work(write=False) as uow:
        areas = repositories(UnitOfWork)
        assert set(areas) == {"members", "orders", "jobs", "calls", "tickets", "outbox",
                              "messaging", "fulfilment"}
        for area, protocol in areas.items():
            repository = getattr(uow, area)
            assert all(callable(getattr(repository, name))
                       for name in protocol_methods(protocol)), area
