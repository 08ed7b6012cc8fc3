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
- ``run_steps`` is that driver for unrelated use cases that should share one trip to the
  database thread (the SMS channel's rounds, ``sms.lane``): each step is committed on its own,
  and one that raises is rolled back alone and reported as ``StepFailed``. With ``early=k``
  and ``on_early``, the first k steps' results also go to the reactor as soon as the k-th step
  ends (through ``callFromThread``, the bridge the Deferred uses, once: each crossing wakes
  the reactor), so their owners need not wait for the later steps of the trip. With
  ``together=k`` the first k steps share one transaction (on PostgreSQL a BEGIN and a COMMIT
  are round trips of their own: about a tenth of a lane round's fixed cost); if one of them
  raises, that transaction is rolled back and they are run again each in its own, so a
  failing step is still rolled back alone. Such steps must not commit themselves, and must
  do nothing but database work (they may run twice).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
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

Step = tuple[Callable[..., Any], tuple[Any, ...]]  # (use case, its arguments after uow, rules)


@dataclass(frozen=True)
class StepFailed:
    """What ``run_steps`` gives for a step that raised (its writes were rolled back)."""

    error: Exception


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

    def run_steps(self, steps: Sequence[Step], early: int = 0,
                  on_early: Callable[[list[Any]], None] | None = None,
                  together: int = 0) -> Deferred[list[Any]]:
        """Run each ``use_case(uow, rules, *args)`` in turn on one connection, committing
        after each (the first ``together`` once, after the last of them: see the module
        doc); fires with their results in order, ``StepFailed`` for a step that raised.
        A failure to commit or roll back (the database gone) fails the whole Deferred.
        ``on_early(results)`` is called in the reactor thread with the first ``early`` steps'
        results as soon as they have ended (if there are later steps; else the Deferred
        brings them), before the Deferred fires."""
        return deferToThreadPool(self.reactor, self.pool, self._steps, list(steps), early,
                                 on_early, together)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        """Run a plain blocking function that needs the store itself (jobs, health checks)."""
        return deferToThreadPool(self.reactor, self.pool, fn, self.store, *args, **kwargs)

    def _steps(self, steps: list[Step], early: int = 0,
               on_early: Callable[[list[Any]], None] | None = None,
               together: int = 0) -> list[Any]:
        results: list[Any] = []
        with self.store.unit_of_work() as uow:
            if together > 1:
                results = self._together(uow, steps[:together])
            for use_case, args in steps[len(results):]:
                if early and len(results) == early and on_early is not None:
                    self.reactor.callFromThread(on_early, list(results))
                results.append(self._step(uow, use_case, args))
        return results

    def _step(self, uow, use_case: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        """One step in its own transaction: its result, or StepFailed (rolled back)."""
        try:
            result = use_case(uow, self.rules, *args)
        except Exception as exc:  # noqa: BLE001 - reported to the step's owner
            uow.rollback()
            return StepFailed(exc)
        uow.commit()
        return result

    def _together(self, uow, steps: list[Step]) -> list[Any]:
        """Steps in one transaction or, if one raises, each in its own."""
        try:
            results = [use_case(uow, self.rules, *args) for use_case, args in steps]
        except Exception:  # noqa: BLE001 - each step is run again alone, and reported
            uow.rollback()
            return [self._step(uow, use_case, args) for use_case, args in steps]
        uow.commit()
        return results

    def _in_unit_of_work(self, use_case, write, args, kwargs):
        with self.store.unit_of_work(write=write) as uow:
            return use_case(uow, self.rules, *args, **kwargs)
