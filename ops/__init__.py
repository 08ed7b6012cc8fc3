"""Operations endpoint: health checks, Prometheus metrics and a small status page over HTTP.

Also the server's Twisted services around the core: the database thread pool
(``ops.dbservice``) and the job timers (``ops.scheduler``).
"""

from core.config_values import is_loopback_host as is_loopback
from ops.http import CheckResult, HealthChecks, OpsService, ops_service

__all__ = ["CheckResult", "HealthChecks", "OpsService", "is_loopback", "ops_service"]
