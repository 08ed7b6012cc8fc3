"""The ops HTTP endpoint (twisted.web): ``/health``, ``/metrics``, a status page at ``/`` and
the ops console under ``/console/`` (``ops.console``).

Loopback by default; any other address needs a token (``ops.token`` or ``[ops] tokens``), and
whenever one is set every request must carry ``Authorization: Bearer <token>`` (the console
also takes the session cookie of a login with a token). Health checks, the metrics refresh hook
and the ``status()`` callable may return Deferreds; each runs under a timeout, so a stuck
database or a wedged session turns into a failing check instead of a hung request.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorTCP,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from core.config import Config, ConfigError
from core.config_values import is_loopback_host
from core.metrics import Metrics
from ops.console.auth import Sessions
from ops.listening import ListeningService
from ops.status_page import collect_samples, render_status_page

log = Logger(namespace="loyalty.ops")

Check = Callable[[], Any]  # returns bool, (bool, detail), or a Deferred / coroutine of those
DEFAULT_CHECK_TIMEOUT = 2.0
REFRESH_SECONDS = 10
_DETAIL_MAX = 300
_TEXT = b"text/plain; charset=utf-8"
_JSON = b"application/json"
_HTML = b"text/html; charset=utf-8"


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str


def _describe(failure: Failure) -> str:
    if failure.check(defer.TimeoutError):
        return "timed out"
    exc = failure.value
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text if len(text) <= _DETAIL_MAX else text[: _DETAIL_MAX - 1] + "…"


def _interpret(result: Any) -> CheckResult:
    if isinstance(result, tuple) and len(result) == 2:
        ok, detail = result
        return CheckResult(bool(ok), str(detail))
    ok = bool(result)
    return CheckResult(ok, "ok" if ok else "check reported failure")


class HealthChecks:
    """Runs named checks concurrently, each under ``timeout`` seconds, never raising.

    A check returns ``True``/``False`` or ``(ok, detail)``, directly or through a Deferred or
    coroutine. Raising, failing or timing out counts as not ok, with the reason as detail.
    Transitions between ok and failing are logged (not every scrape).
    """

    def __init__(self, checks: Mapping[str, Check], timeout: float,
                 reactor: IReactorTime) -> None:
        self.checks = dict(checks)
        self.timeout = timeout
        self.reactor = reactor
        self._last: dict[str, bool] = {}

    def run(self) -> Deferred[dict[str, CheckResult]]:
        names = list(self.checks)
        pending = [self._run_one(name, self.checks[name]) for name in names]
        d = defer.gatherResults(pending)
        d.addCallback(lambda results: dict(zip(names, results, strict=True)))
        return d

    def _run_one(self, name: str, check: Check) -> Deferred[CheckResult]:
        d = defer.maybeDeferred(check)
        d.addTimeout(self.timeout, self.reactor)
        d.addCallback(_interpret)
        d.addErrback(self._failed)
        d.addCallback(self._note, name)
        return d

    def _failed(self, failure: Failure) -> CheckResult:
        detail = _describe(failure)
        if failure.check(defer.TimeoutError):
            detail = f"timed out after {self.timeout:g} s"
        return CheckResult(False, detail)

    def _note(self, result: CheckResult, name: str) -> CheckResult:
        before = self._last.get(name)
        self._last[name] = result.ok
        if not result.ok and before is not False:
            log.warn("health check {check} failing: {detail}", check=name, detail=result.detail)
        elif result.ok and before is False:
            log.info("health check {check} ok again", check=name)
        return result


def _guarded(fn: Callable[[], Any] | None, timeout: float,
             reactor: IReactorTime) -> Deferred[Any]:
    """Call an optional hook under a timeout; the Deferred fires with its result or a Failure."""
    if fn is None:
        return defer.succeed(None)
    d = defer.maybeDeferred(fn)
    d.addTimeout(timeout, reactor)
    return d


class OpsResource(Resource):
    """One leaf resource routing by path; auth first, then method, then path."""

    isLeaf = True

    def __init__(self, metrics: Metrics, health: HealthChecks, *, token: str = "",
                 reactor: IReactorTime, status: Callable[[], Any] | None = None,
                 before_metrics: Callable[[], Any] | None = None,
                 tokens: Mapping[str, str] | None = None, console: Any = None) -> None:
        super().__init__()
        self.metrics = metrics
        self.health = health
        self.reactor = reactor
        self.status = status
        self.before_metrics = before_metrics
        self.started_at = reactor.seconds()
        named = dict(tokens or {})
        if token:
            named.setdefault("ops", token)
        self.sessions = console.sessions if console is not None else Sessions(named)
        self.console = console
        self._routes = {b"/": self._page, b"/health": self._health, b"/metrics": self._metrics}

    @property
    def auth_required(self) -> bool:
        return self.sessions.token_required

    # -- request entry --------------------------------------------------------------------

    def render(self, request: Request) -> bytes | int:
        request.setHeader(b"server", b"loyalty-ops")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-content-type-options", b"nosniff")
        if self.console is not None and (request.path == b"/console"
                                         or request.path.startswith(b"/console/")):
            return self._later(request, self.console.handle(request))  # its own auth
        if self.auth_required and not self._authorised(request):
            log.warn("ops request refused: missing or wrong bearer token from {client} "
                     "for {path}", client=_client(request), path=_path(request))
            request.setResponseCode(401)
            request.setHeader(b"www-authenticate", b'Bearer realm="loyalty-ops"')
            return self._text(request, "unauthorised\n")
        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(405)
            request.setHeader(b"allow", b"GET, HEAD")
            return self._text(request, "method not allowed\n")
        route = self._routes.get(request.path)
        if route is None:
            request.setResponseCode(404)
            return self._text(request, "not found\n")
        return route(request)

    def _authorised(self, request: Request) -> bool:
        # Every token is compared, even on a wrong scheme, so timing says nothing either way.
        return self.sessions.bearer(request.getHeader(b"authorization") or b"") is not None

    @staticmethod
    def _text(request: Request, text: str) -> bytes:
        request.setHeader(b"content-type", _TEXT)
        return text.encode("utf-8")

    # -- routes ---------------------------------------------------------------------------

    def _health(self, request: Request) -> int:
        def respond(results: dict[str, CheckResult]) -> tuple[int, bytes, bytes]:
            ok = all(r.ok for r in results.values())
            body = {"status": "ok" if ok else "fail",
                    "checks": {n: {"ok": r.ok, "detail": r.detail} for n, r in results.items()}}
            return (200 if ok else 503), _JSON, json.dumps(body, ensure_ascii=False).encode()

        return self._later(request, self.health.run().addCallback(respond))

    def _metrics(self, request: Request) -> int:
        def respond(_: object) -> tuple[int, bytes, bytes]:
            return 200, CONTENT_TYPE_LATEST.encode("ascii"), generate_latest(self.metrics.registry)

        return self._later(request, self._refresh().addCallback(respond))

    def _page(self, request: Request) -> int:
        timeout = self.health.timeout
        health = self.health.run()
        refreshed = self._refresh()
        extra = _guarded(self.status, timeout, self.reactor)
        extra.addErrback(lambda f: {"status()": f"unavailable: {_describe(f)}"})

        def respond(results: list[Any]) -> tuple[int, bytes, bytes]:
            checks, _, facts = results
            request.setHeader(b"content-security-policy",
                              b"default-src 'none'; style-src 'unsafe-inline'")
            request.setHeader(b"x-frame-options", b"DENY")
            request.setHeader(b"referrer-policy", b"no-referrer")
            body = render_status_page(
                samples=collect_samples(self.metrics.registry), health=checks,
                extra=facts if isinstance(facts, Mapping) else {"status()": facts},
                started_at=self.started_at, now=self.reactor.seconds(),
                refresh_seconds=REFRESH_SECONDS)
            return 200, _HTML, body

        d = defer.gatherResults([health, refreshed, extra], consumeErrors=True)
        return self._later(request, d.addCallback(respond))

    def _refresh(self) -> Deferred[None]:
        """Run ``before_metrics``; a failure is logged and the (stale) registry still served."""
        d = _guarded(self.before_metrics, self.health.timeout, self.reactor)

        def failed(failure: Failure) -> None:
            log.warn("metrics refresh failed, serving last values: {reason}",
                     reason=_describe(failure))

        return d.addCallbacks(lambda _: None, failed)

    def _later(self, request: Request, d: Deferred[tuple[int, bytes, bytes]]) -> int:
        """Finish ``request`` when ``d`` fires (unless the client has gone away)."""
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def broken(failure: Failure) -> tuple[int, bytes, bytes]:
            log.failure("ops request {path} failed", failure, path=_path(request))
            return 500, _TEXT, b"internal error\n"

        def send(response: tuple[int, bytes, bytes]) -> None:
            if gone:
                return
            code, content_type, body = response
            request.setResponseCode(code)
            request.setHeader(b"content-type", content_type)
            request.setHeader(b"content-length", str(len(body)).encode("ascii"))
            if request.method != b"HEAD":
                request.write(body)
            request.finish()

        d.addErrback(broken).addCallback(send)
        d.addErrback(lambda f: log.failure("ops response not sent", f))
        return NOT_DONE_YET


def _path(request: Request) -> str:
    return request.path.decode("utf-8", "replace")


def _client(request: Request) -> str:
    peer = request.getClientAddress()
    return getattr(peer, "host", str(peer))


class _OpsSite(Site):
    """A Site whose access log goes to twisted.logger (debug level) instead of a log file."""

    noisy = False
    displayTracebacks = False

    def log(self, request: Request) -> None:
        log.debug("{method} {path} -> {code} ({client})",
                  method=request.method.decode("ascii", "replace"), path=_path(request),
                  code=request.code, client=_client(request))


class OpsService(ListeningService):
    """The listening ops endpoint. ``port`` is the IListeningPort once listening."""

    def __init__(self, endpoint: IStreamServerEndpoint, site: Site, resource: OpsResource,
                 host: str, reactor: IReactorTime) -> None:
        super().__init__(endpoint, site)
        self.site = site
        self.resource = resource
        self.host = host
        self.reactor = reactor

    def startService(self) -> None:
        self.resource.started_at = self.reactor.seconds()
        if self.resource.console is not None:
            self.resource.console.ring.startService()
        super().startService()

    def stopService(self) -> Deferred | None:
        if self.resource.console is not None and self.resource.console.ring.running:
            self.resource.console.ring.stopService()
        return super().stopService()

    def listening(self, port: IListeningPort) -> None:
        log.info("ops endpoint listening on {host}:{port} (auth: {auth})", host=self.host,
                 port=port.getHost().port,
                 auth="bearer token" if self.resource.auth_required else "none, loopback only")


def ops_service(config: Config, metrics: Metrics, checks: Mapping[str, Check],
                reactor: IReactorTCP, status: Callable[[], Any] | None = None,
                before_metrics: Callable[[], Any] | None = None, *,
                check_timeout: float = DEFAULT_CHECK_TIMEOUT, db: Any = None) -> OpsService:
    """Build (not start) the ops HTTP service listening on ``config.ops.host:port``.

    ``checks``: name -> callable returning bool / (bool, detail), or a Deferred of one.
    ``status``: optional callable returning a dict (or a Deferred of one) of label -> value
    shown on the status page. ``before_metrics``: optional hook (may return a Deferred) run
    before ``/metrics`` and the status page read the registry, e.g. to set gauges.
    ``db``: the ``DatabaseService``; with it the ops console is served under ``/console/``.
    Raises ConfigError when the host is not loopback and no token is set.
    """
    ops = config.ops
    if not ops.named_tokens() and not is_loopback_host(ops.host):
        raise ConfigError(f"ops.token: required when ops.host ({ops.host!r}) is not a loopback "
                          "address (or name tokens in [ops] tokens)")
    if check_timeout <= 0:
        raise ConfigError("ops check timeout: must be positive")
    host = "127.0.0.1" if ops.host.lower() == "localhost" else ops.host.strip("[]")
    try:
        ipv6 = ipaddress.ip_address(host).version == 6
    except ValueError:
        ipv6 = False
    endpoint_type = TCP6ServerEndpoint if ipv6 else TCP4ServerEndpoint
    endpoint = endpoint_type(reactor, ops.port, interface=host)
    console = None
    if db is not None:
        from ops.console.app import Console
        from ops.console.charts import MetricsRing

        console = Console(db=db, config=config, ring=MetricsRing(metrics.registry, reactor),
                          reactor=reactor, sessions=Sessions(ops.named_tokens()))
    resource = OpsResource(metrics, HealthChecks(checks, check_timeout, reactor),
                           tokens=ops.named_tokens(), reactor=reactor, status=status,
                           before_metrics=before_metrics, console=console)
    site = _OpsSite(resource, timeout=30, reactor=reactor)
    service = OpsService(endpoint, site, resource, host, reactor)
    service.setName("ops")
    return service
