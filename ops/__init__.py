"""Operations endpoint: health checks, Prometheus metrics and a small status page over HTTP."""

from ops.http import CheckResult, HealthChecks, OpsService, is_loopback, ops_service

__all__ = ["CheckResult", "HealthChecks", "OpsService", "is_loopback", "ops_service"]
