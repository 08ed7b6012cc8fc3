"""What the core needs of the store, as protocols (pure Python: no SQLAlchemy, no Twisted).

Use cases type their ``uow`` parameter with ``UnitOfWork``; ``core.store`` implements it."""

from core.ports.calls import CallsRepository, TicketsRepository
from core.ports.fulfilment import FulfilmentRepository
from core.ports.jobs import JobsRepository
from core.ports.members import MembersRepository
from core.ports.orders import AtomicRedemption, OrdersRepository, RedemptionRequest
from core.ports.outbox import OutboxRepository
from core.ports.uow import SetAsideRecord, UnitOfWork

__all__ = [
    "AtomicRedemption",
    "CallsRepository",
    "FulfilmentRepository",
    "JobsRepository",
    "MembersRepository",
    "OrdersRepository",
    "OutboxRepository",
    "RedemptionRequest",
    "SetAsideRecord",
    "TicketsRepository",
    "UnitOfWork",
]
