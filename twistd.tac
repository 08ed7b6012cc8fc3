# The one composition root: `twistd -ny twistd.tac` (config from $LOYALTY_CONFIG or the default).
# Tests load this file with runpy and call build_server() to get the same service tree.

from twisted.application import service
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.logger import ILogObserver, Logger

from core.config import ConfigError, load_config
from ops.dbservice import DatabaseService
from ops.fulfilment import FulfilmentService
from ops.scheduler import jobs_service
from core.metrics import Metrics
from core.rules import ProgrammeRules
from core.store import DatabaseUnreachable, SchemaBehind, Store
from ivr.ami import AMIDialer, AMIDialerService
from ivr.prompt_watch import PromptSetWatcher
from ivr.server import fastagi_endpoint, fastagi_service, tune_gc
from ops import ops_service
from ops.logs import log_observer
from ops.startup import cannot_listen, log_file, twistd_options
from prompts.presence import PromptPresence
from prompts.store import active_root
from sms.server import sms_service

log = Logger(namespace="loyalty")


class ServiceTree(service.MultiService):
    """Stops children one at a time, last started first, each after the one before has
    finished: the channels' last writes need the database pool, which stops last.
    (MultiService would start every stop at once.)"""

    def privilegedStartService(self):
        service.Service.privilegedStartService(self)
        self._start_children("privilegedStartService")

    def startService(self):
        service.Service.startService(self)
        self._start_children("startService")

    def _start_children(self, step):
        """Start each child; a port that cannot be opened ends the process with one line
        naming the config key, rather than a traceback and a half-started server."""
        for child in self:
            try:
                getattr(child, step)()
            except CannotListenError as problem:
                self._abandon_start()
                raise SystemExit(
                    f"loyalty: cannot start: {cannot_listen(child.name, problem)}") from None

    def _abandon_start(self):
        # The reactor is not running yet, so no child can stop the usual way; the database
        # pool's threads are the only thing that would keep the process from exiting.
        service.Service.stopService(self)
        db = getattr(self, "db", None)
        if db is not None and db.running:
            db.pool.stop()
            db.store.dispose()

    @defer.inlineCallbacks
    def stopService(self):
        service.Service.stopService(self)
        for child in reversed(list(self)):
            if child.running:
                yield defer.maybeDeferred(child.stopService)


def build_server(config, reactor=None):
    """Every long-lived part of the server, attached to one MultiService.

    Children stop in reverse order: ops, jobs, channels, then the database they write to.
    """
    if reactor is None:
        from twisted.internet import reactor
    db_config = config.database
    store = Store(db_config.url, pool_size=db_config.pool_size,
                  busy_timeout_ms=db_config.busy_timeout_ms)
    store.check_schema()  # before the reactor runs: refuse a schema that is behind
    top = ServiceTree()
    top.metrics = Metrics()
    top.metrics.process_info.labels(name=config.process.name or "-").set(1)
    top.db = DatabaseService(store, ProgrammeRules.from_config(config), reactor)
    top.db.setName("database")
    top.db.setServiceParent(top)

    top.sms = sms_service(config, top.db, top.metrics, reactor)
    top.sms.setServiceParent(top)
    # Which recordings the active prompt set has (reward and courier names): listed now, before
    # the reactor runs, and again by the watcher (off the reactor) whenever the set changes.
    presence = PromptPresence.scan(active_root(config.prompts.dir))
    top.fastagi = fastagi_service(config, top.db, top.metrics, reactor,
                                  fastagi_endpoint(reactor, config.fastagi), prompts=presence)
    top.fastagi.setServiceParent(top)

    top.prompts = PromptSetWatcher(config.prompts.dir, reactor=reactor, presence=presence)
    top.prompts.setServiceParent(top)

    dialer = None
    if config.ami.fastagi_url:
        log.warn("ami.fastagi_url is no longer used: warning calls enter the dialplan at "
                 "ami.context/exten/priority ({context}); remove the key",
                 context=config.ami.context)
    if config.ami.enabled:
        ami = config.ami
        dialer = AMIDialer(ami.host, ami.port, ami.username, ami.secret, caller_id=ami.caller_id,
                           channel_template=ami.channel_template, context=ami.context,
                           exten=ami.exten, priority=ami.priority,
                           answer_timeout_s=ami.answer_timeout_s,
                           max_concurrent_calls=ami.max_concurrent_calls, reactor=reactor)
        AMIDialerService(dialer).setServiceParent(top)
    if config.jobs.enabled:
        top.jobs = jobs_service(config, top.db, top.metrics, reactor, dialer=dialer)
        top.jobs.setServiceParent(top)

    if config.fulfilment.url:
        top.fulfilment = FulfilmentService(config.fulfilment, top.db, top.metrics, reactor)
        top.fulfilment.setServiceParent(top)
    else:
        log.info("fulfilment.url is empty: service and voucher orders wait for "
                 "`loyalty orders export --pending` and `loyalty import fulfilments`")

    checks = {
        "database": lambda: top.db.call(lambda s: s.ping()),
        "smpp": lambda: (top.sms.bound or not config.smpp.enabled,
                         "bound" if top.sms.bound else
                         "disabled" if not config.smpp.enabled else "not bound"),
        "fastagi": lambda: (top.fastagi.port is not None,
                            f"{config.fastagi.host}:{config.fastagi.port}"),
        "prompts": top.prompts.health,
    }
    top.ops = ops_service(config, top.metrics, checks, reactor, status=top.prompts.status,
                          before_metrics=top.sms.refresh_metrics, db=top.db)
    top.ops.setServiceParent(top)
    return top


if __name__ == "builtins":  # run by twistd, not imported by a test
    try:
        _config = load_config()
        # twistd's -l FILE would be dropped with the observer below: honour it here.
        _config = _config.replace("logging", file=log_file(_config.logging.file,
                                                           twistd_options()))
        application = service.Application("loyalty")
        application.setComponent(ILogObserver, log_observer(_config.logging,
                                                             _config.process.name))
        build_server(_config).setServiceParent(application)
        tune_gc()  # thousands of calls in flight: keep collector pauses out of think time
    except (ConfigError, SchemaBehind, DatabaseUnreachable) as _problem:
        raise SystemExit(f"loyalty: cannot start: {_problem}") from None
    log.info("loyalty server configured")
