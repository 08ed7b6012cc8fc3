# The one composition root: `twistd -ny twistd.tac` (config from $LOYALTY_CONFIG or the default).
# Tests load this file with runpy and call build_server() to get the same service tree.

from twisted.application import service
from twisted.logger import Logger

from core.config import ConfigError, load_config
from core.dbservice import DatabaseService
from core.metrics import Metrics
from core.rules import ProgrammeRules
from core.store import SchemaBehind, Store
from ops import ops_service

log = Logger(namespace="loyalty")


def build_server(config, reactor=None):
    """Every long-lived part of the server, attached to one MultiService."""
    if reactor is None:
        from twisted.internet import reactor
    db_config = config.database
    store = Store(db_config.url, pool_size=db_config.pool_size,
                  busy_timeout_ms=db_config.busy_timeout_ms)
    store.check_schema()  # before the reactor runs: refuse a schema that is behind
    top = service.MultiService()
    top.metrics = Metrics()
    top.db = DatabaseService(store, ProgrammeRules(config.programme, config.tiers), reactor)
    top.db.setName("database")
    top.db.setServiceParent(top)

    checks = {"database": lambda: top.db.call(lambda s: s.ping())}
    top.ops = ops_service(config, top.metrics, checks, reactor)
    top.ops.setServiceParent(top)
    return top


if __name__ == "builtins":  # run by twistd, not imported by a test
    try:
        _config = load_config()
        application = service.Application("loyalty")
        build_server(_config).setServiceParent(application)
    except (ConfigError, SchemaBehind) as _problem:
        raise SystemExit(f"loyalty: cannot start: {_problem}") from None
    log.info("loyalty server configured")
