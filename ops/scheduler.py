"""The job timers service (Twisted): each job at its local time, run on the database pool.

``jobs_service(config, db, metrics, reactor, dialer=None)`` builds the service tree part:

- :class:`JobsService` keeps one ``callLater`` per job, set to the job's next occurrence (a
  local wall-clock time in the programme's zone, from the reactor's clock; ``core.jobs.due``
  says when). A firing runs the job: claim the run (``core.jobs.runs``) and then one
  ``db.run`` per batch, so other database work interleaves with a long run (on SQLite's
  single thread too). Every
  ``recheck_s`` (and at start) it also makes up a run of the current period that has not
  happened (the server was down at the time), resumes a run left by a dead process, and
  retries a failed one (the claim decides; see ``core.jobs.runs``).
- A failed run is logged with keyword fields and counted in ``loyalty_job_failures``; the
  schedule goes on. Finished runs are counted in ``loyalty_job_runs``.
- With an AMI dialer, :class:`ivr.voice_warnings.VoiceWarningService` places the voice warnings.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from core.clock import utc_now
from core.config import Config
from core.jobs.base import Job
from core.jobs.due import current_run_due, key_of_run_at, next_run_at
from core.jobs.registry import JOBS
from core.jobs.runs import (
    FAILED,
    INTERRUPTED,
    Claim,
    LostClaim,
    claim_run,
    end_run,
    new_owner,
    run_step,
)
from core.metrics import Metrics
from ivr.voice_warnings import Dialer, VoiceWarningService
from ops.dbservice import DatabaseService

RECHECK_S = 300.0


class JobsService(Service):
    name = "job-scheduler"
    log = Logger()

    def __init__(self, config: Config, db: DatabaseService, metrics: Metrics | None,
                 reactor: IReactorTime, *,
                 jobs: dict[str, Job] | None = None, recheck_s: float = RECHECK_S,
                 catch_up: bool = True, batch: int | None = None,
                 on_finished: Callable[[str, Claim], object] | None = None) -> None:
        self.config = config
        self.db = db
        self.metrics = metrics
        self.reactor = reactor
        self.jobs = dict(JOBS if jobs is None else jobs)
        self.recheck_s = recheck_s
        self.catch_up = catch_up
        self.batch = batch
        self.on_finished = on_finished  # called with (job name, claim) after a run's end
        self.owner = new_owner(config.process.name)
        self.zone = config.programme.zone
        self.next_runs: dict[str, datetime] = {}
        self._calls: dict[str, IDelayedCall] = {}
        self._running: dict[str, Deferred] = {}
        self._recheck: LoopingCall | None = None
        self._stopping = False

    def now(self) -> datetime:
        return utc_now(self.reactor)

    # --- lifecycle --------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._stopping = False
        if not self.config.jobs.enabled:
            self.log.info("scheduled jobs are disabled (jobs.enabled = false)")
            return
        now = self.now()
        for job in self.jobs.values():
            self._schedule(job, now)
        if self.catch_up:
            self._recheck = LoopingCall(self.recheck)
            self._recheck.clock = self.reactor
            self._recheck.start(self.recheck_s, now=True)

    def stopService(self) -> Deferred:
        super().stopService()
        self._stopping = True
        for call in self._calls.values():
            if call.active():
                call.cancel()
        self._calls.clear()
        if self._recheck is not None and self._recheck.running:
            self._recheck.stop()
        self._recheck = None
        running = list(self._running.values())
        if not running:
            return succeed(None)
        # Each run stops after its current batch and records itself "interrupted".
        return DeferredList(running, consumeErrors=True)

    # --- timing -----------------------------------------------------------------------------

    def _schedule(self, job: Job, after: datetime) -> None:
        at = next_run_at(job, self.config.jobs, after, self.zone)
        delay = max(0.0, (at - self.now()).total_seconds())
        self.next_runs[job.name] = at
        self._calls[job.name] = self.reactor.callLater(delay, self._fire, job, at)
        self.log.debug("job {job} next runs at {at}", job=job.name,
                       at=at.astimezone(self.zone).isoformat())

    def _fire(self, job: Job, at: datetime) -> None:
        self._calls.pop(job.name, None)
        if self._stopping:
            return
        self._schedule(job, at)
        self.run(job.name, key_of_run_at(job, at, self.zone))

    def recheck(self) -> None:
        """Run each job whose current period's run is due but not done (the claim skips runs
        that are done or going elsewhere)."""
        if self._stopping:
            return
        now = self.now()
        for job in self.jobs.values():
            if job.name in self._running:
                continue
            key = current_run_due(job, self.config.jobs, now, self.zone)
            if key is not None:
                self.run(job.name, key, quiet=True)

    # --- running ----------------------------------------------------------------------------

    def run(self, name: str, key: str, *, quiet: bool = False) -> Deferred:
        """Run job ``name`` for ``key`` unless it is running here already. The Deferred fires
        with the final claim (None when skipped) and never fails."""
        if name in self._running:
            return self._running[name]
        d = Deferred.fromCoroutine(self._run(self.jobs[name], key, quiet))
        self._running[name] = d

        def done(result: Any) -> Any:
            self._running.pop(name, None)
            return result

        d.addBoth(done)
        return d

    async def _run(self, job: Job, key: str, quiet: bool) -> Claim | None:
        fields = dict(job=job.name, run_key=key)
        try:
            claim = await self.db.run(claim_run, job.name, key, self.now(), owner=self.owner)
        except Exception:
            self.log.failure("job {job} {run_key}: could not claim the run", **fields)
            self._count("job_failures", job.name)
            return None
        if claim is None:
            if not quiet:
                self.log.info("job {job} {run_key}: done or running elsewhere; skipped",
                              **fields)
            return None
        self.log.info("job {job} {run_key}: {how}", how="resumed" if claim.resumed else "started",
                      attempt=claim.attempt, **fields)
        try:
            while True:
                if self._stopping:
                    await self.db.run(end_run, claim, self.now(), state=INTERRUPTED)
                    self.log.info("job {job} {run_key}: interrupted by shutdown, resumes at the "
                                  "next start", **fields)
                    return claim
                report = await self.db.run(run_step, claim, self.config.jobs, self.now(),
                                           batch=self.batch)
                claim = report.claim
                for event in report.step.events:
                    self._log_event(job.name, event)
                if report.done:
                    break
        except LostClaim:
            self.log.warn("job {job} {run_key}: taken over by another process; stopping",
                          **fields)
            return claim
        except Exception as exc:
            self.log.failure("job {job} {run_key}: run failed", **fields)
            self._count("job_failures", job.name)
            try:
                await self.db.run(end_run, claim, self.now(), state=FAILED,
                                  error=f"{type(exc).__name__}: {exc}")
            except Exception:
                self.log.failure("job {job} {run_key}: could not record the failure", **fields)
            return claim
        self._count("job_runs", job.name)
        self.log.info("job {job} {run_key}: done {counts}", counts=claim.counts, **fields)
        if self.on_finished is not None:
            try:
                self.on_finished(job.name, claim)
            except Exception:
                self.log.failure("job {job}: on_finished hook failed", job=job.name)
        return claim

    def _log_event(self, job: str, event: dict[str, Any]) -> None:
        if "set_aside" in event:
            self._count("job_set_aside", job)
            self.log.warn("job {job}: {set_aside} set aside ({error}); the run goes on "
                          "(loyalty queues list)", job=job, **event)
        elif "refused" in event:
            self.log.warn("job {job}: subscription {subscription} ({msisdn}, {reward}) not "
                          "redeemed: {refused}", job=job, **event)
        elif "order_no" in event:
            self.log.info("job {job}: deducted {points} points from {msisdn} for {reward} "
                          "(order {order_no}, subscription {subscription}, {month})",
                          job=job, **event)
        else:
            self.log.info("job {job}: {event}", job=job, event=event)

    def _count(self, metric: str, job: str) -> None:
        if self.metrics is not None:
            getattr(self.metrics, metric).labels(job=job).inc()


def jobs_service(config: Config, db: DatabaseService, metrics: Metrics | None,
                 reactor: IReactorTime, dialer: Dialer | None = None) -> Service:
    """The jobs part of the service tree: the scheduler, and the voice warning dispatcher when
    an AMI dialer is given (its own ``AMIDialerService`` must be in the tree too)."""
    parent = MultiService()
    parent.setName("jobs")
    voice = None
    if dialer is not None:
        voice = VoiceWarningService(config, db, dialer, metrics, reactor=reactor)
        voice.setServiceParent(parent)

    def finished(job: str, claim: Claim) -> None:
        if voice is not None and job == "expiry-warnings":
            voice.poll()

    JobsService(config, db, metrics, reactor, on_finished=finished).setServiceParent(parent)
    return parent
