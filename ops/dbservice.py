"""The one bridge between Twisted and the store: use cases run on a dedicated thread pool.

``run(use_case, *args)`` calls ``use_case(uow, rules, *args)`` on a pool thread inside a fresh
unit of work and returns a Deferred firing with its (frozen) result. Nothing Twisted runs on the
pool threads; nothing blocking runs on the reactor.

Who owns the transaction:

- The unit of work (``Store.unit_of_work``, used by ``run``, the CLI and the tests) commits
  when the use case returns and rolls back when it raises. Use cases never commit.
- An outcome that must be kept although the request fails (a wrong PIN or confirmation code
  counted towards the lock) is a returned result, not an exception (``SecretCheck``).
- To compose use cases in one transaction, call them with the same ``uow``: the outermost
  caller's unit of work commits them together.
- To let one part fail alone, wrap it in ``with uow.savepoint():`` - on an exception only the
  block's writes are undone, the exception goes on, the rest of the transaction stays.
- Work done in steps (job batches, MO batches, queue retries) has a driver that opens one
  unit of work per step (one ``run`` per step), or, inside one long-lived unit of work,
  commits between steps (``uow.commit``); the use case for a step never commits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from core.rules import ProgrammeRules
from core.store import Store

T = TypeVar("T")


class DatabaseService(Service):
    log = Logger()

    def __init__(self, store: Store, rules: ProgrammeRules, reactor: IReactorThreads) -> None:
        self.store = store
        self.rules = rules
        self.reactor = reactor
        # SQLite: one thread (one writer anyway); PostgreSQL: one per pooled connection.
        self.pool = ThreadPool(minthreads=1, maxthreads=store.threads, name="loyalty-db")

    def startService(self) -> None:
        super().startService()
        self.pool.start()
        self.log.info("database pool started on {backend} with {threads} thread(s)",
                      backend="sqlite" if self.store.is_sqlite else "postgresql",
                      threads=self.store.threads)

    def stopService(self) -> Deferred | None:
        super().stopService()
        pool, store = self.pool, self.store

        def _stop() -> None:
            pool.stop()
            store.dispose()

        # Joining the threads blocks; let queued work drain off the reactor thread.
        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), _stop)

    def run(self, use_case: Callable[..., T], *args: Any, write: bool = True,
            **kwargs: Any) -> Deferred[T]:
        """Run ``use_case(uow, rules, *args, **kwargs)`` in its own unit of work."""
        return deferToThreadPool(self.reactor, self.pool, self._in_unit_of_work, use_case,
                                 write, args, kwargs)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        """Run a plain blocking function that needs the store itself (jobs, health checks)."""
        return deferToThreadPool(self.reactor, self.pool, fn, self.store, *args, **kwargs)

    def _in_unit_of_work(self, use_case, write, args, kwargs):
        with self.store.unit_of_work(write=write) as uow:
            return use_case(uow, self.rules, *args, **kwargs)
