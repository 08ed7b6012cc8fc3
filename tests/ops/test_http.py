"""The ops HTTP endpoint over real TCP on 127.0.0.1 with twisted.web's Agent."""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, reactor
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Protocol
from twisted.logger import formatEvent, globalLogPublisher
from twisted.web.client import Agent, ResponseDone
from twisted.web.http_headers import Headers

from core.config import Config, ConfigError
from core.metrics import Metrics
from ops import ops_service
from ops.status_page import collect_samples, render_status_page

TOKEN = "s3cret-Token-xyz"


@pytest.fixture
def metrics():
    return Metrics()


@pytest.fixture
def serve(metrics):
    """Start an ops service on 127.0.0.1:0; yields a starter returning (service, base URL)."""
    started = []

    @defer.inlineCallbacks
    def start(checks=None, token="", **kwargs):
        config = Config().replace("ops", host="127.0.0.1", port=0, token=token)
        service = ops_service(config, metrics, checks or {}, reactor, **kwargs)
        service.startService()
        started.append(service)
        port = yield service.whenListening()
        return service, f"http://127.0.0.1:{port.getHost().port}"

    yield start
    for service in started:
        pytest_twisted.blockon(service.stopService())


class _Body(Protocol):
    """Collects a response body (twisted's readBody warns about the proxy transport here)."""

    def __init__(self, done):
        self.done, self.parts = done, []

    def dataReceived(self, data):
        self.parts.append(data)

    def connectionLost(self, reason):
        if reason.check(ResponseDone):
            self.done.callback(b"".join(self.parts))
        else:
            self.done.errback(reason)


@defer.inlineCallbacks
def fetch(url, method=b"GET", headers=None):
    agent = Agent(reactor)
    response = yield agent.request(method, url.encode("ascii"), Headers(headers or {}))
    body = defer.Deferred()
    response.deliverBody(_Body(body))
    return response, (yield body)


def header(response, name):
    values = response.headers.getRawHeaders(name)
    return values[0] if values else None


def metric_value(body, sample_name, **labels):
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for sample in family.samples:
            if sample.name == sample_name and sample.labels == labels:
                return sample.value
    return None


def never():
    return defer.Deferred()  # a check that never answers


# -- /health ----------------------------------------------------------------------------------

@pytest_twisted.inlineCallbacks
def test_health_ok_when_every_check_passes(serve):
    async def coroutine_check():
        return True

    _, base = yield serve({"database": lambda: defer.succeed(True), "smpp": lambda: True,
                           "fastagi": coroutine_check})
    response, body = yield fetch(base + "/health")
    assert response.code == 200
    assert header(response, "content-type") == "application/json"
    assert json.loads(body) == {"status": "ok", "checks": {
        "database": {"ok": True, "detail": "ok"}, "smpp": {"ok": True, "detail": "ok"},
        "fastagi": {"ok": True, "detail": "ok"}}}


@pytest_twisted.inlineCallbacks
def test_health_503_with_failing_raising_and_slow_checks(serve):
    def raises():
        raise ConnectionError("database is locked")

    _, base = yield serve({
        "fine": lambda: True,
        "smpp": lambda: (False, "not bound (connecting)"),
        "fastagi": lambda: False,
        "database": raises,
        "deferred_error": lambda: defer.fail(RuntimeError("pool gone")),
        "slow": never,
    }, check_timeout=0.2)
    started = reactor.seconds()
    response, body = yield fetch(base + "/health")
    assert reactor.seconds() - started < 2  # the slow check was cut off, not awaited
    assert response.code == 503
    result = json.loads(body)
    assert result["status"] == "fail"
    checks = result["checks"]
    assert checks["fine"] == {"ok": True, "detail": "ok"}
    assert checks["smpp"] == {"ok": False, "detail": "not bound (connecting)"}
    assert checks["fastagi"]["ok"] is False
    assert checks["database"] == {"ok": False, "detail": "ConnectionError: database is locked"}
    assert checks["deferred_error"] == {"ok": False, "detail": "RuntimeError: pool gone"}
    assert checks["slow"] == {"ok": False, "detail": "timed out after 0.2 s"}


@pytest_twisted.inlineCallbacks
def test_health_runs_checks_on_every_request_and_recovers(serve):
    state = {"up": False}
    _, base = yield serve({"smpp": lambda: state["up"]})
    response, _ = yield fetch(base + "/health")
    assert response.code == 503
    state["up"] = True
    response, _ = yield fetch(base + "/health")
    assert response.code == 200


@pytest_twisted.inlineCallbacks
def test_head_health_gives_status_without_body(serve):
    _, base = yield serve({"smpp": lambda: False})
    response, body = yield fetch(base + "/health", method=b"HEAD")
    assert response.code == 503
    assert body == b""


# -- /metrics ---------------------------------------------------------------------------------

@pytest_twisted.inlineCallbacks
def test_metrics_parse_and_counters_move_between_scrapes(serve, metrics):
    refreshes = []

    def refresh():
        refreshes.append(1)
        metrics.outbox_depth.set(7)
        return defer.succeed(None)

    _, base = yield serve(before_metrics=refresh)
    metrics.sms_mo.labels(outcome="handled").inc()
    metrics.calls.labels(script="loyalty", outcome="completed").inc()
    response, first = yield fetch(base + "/metrics")
    assert response.code == 200
    assert header(response, "content-type").startswith("text/plain; version=")
    assert metric_value(first, "loyalty_sms_mo_total", outcome="handled") == 1
    assert metric_value(first, "loyalty_calls_total", script="loyalty",
                        outcome="completed") == 1
    assert metric_value(first, "loyalty_outbox_depth") == 7
    names = {f.name for f in text_string_to_metric_families(first.decode())}
    assert {"loyalty_calls_active", "loyalty_agi_think_seconds", "loyalty_sms_mt",
            "loyalty_smpp_throttled", "loyalty_job_runs"} <= names

    metrics.sms_mo.labels(outcome="handled").inc(2)
    metrics.calls.labels(script="loyalty", outcome="completed").inc()
    metrics.redemptions.labels(channel="sms").inc()
    _, second = yield fetch(base + "/metrics")
    assert metric_value(second, "loyalty_sms_mo_total", outcome="handled") == 3
    assert metric_value(second, "loyalty_calls_total", script="loyalty",
                        outcome="completed") == 2
    assert metric_value(second, "loyalty_redemptions_total", channel="sms") == 1
    assert len(refreshes) == 2


@pytest_twisted.inlineCallbacks
def test_metrics_still_served_when_refresh_fails_or_hangs(serve, metrics):
    metrics.outbox_depth.set(4)
    _, base = yield serve(before_metrics=lambda: defer.fail(OSError("db down")))
    response, body = yield fetch(base + "/metrics")
    assert response.code == 200
    assert metric_value(body, "loyalty_outbox_depth") == 4

    _, base = yield serve(before_metrics=never, check_timeout=0.2)
    response, body = yield fetch(base + "/metrics")
    assert response.code == 200
    assert metric_value(body, "loyalty_outbox_depth") == 4


# -- auth, routing ----------------------------------------------------------------------------

@pytest_twisted.inlineCallbacks
def test_token_required_when_set(serve):
    _, base = yield serve({"smpp": lambda: True}, token=TOKEN)
    for path in ("/health", "/metrics", "/", "/nope"):
        response, _ = yield fetch(base + path)
        assert response.code == 401, path
        assert header(response, "www-authenticate").startswith("Bearer")
    for bad in (f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer "):
        response, _ = yield fetch(base + "/health", headers={"Authorization": [bad]})
        assert response.code == 401, bad
    response, body = yield fetch(base + "/health",
                                 headers={"Authorization": [f"Bearer {TOKEN}"]})
    assert response.code == 200
    assert json.loads(body)["status"] == "ok"
    response, _ = yield fetch(base + "/metrics", headers={"Authorization": [f"bearer {TOKEN}"]})
    assert response.code == 200


@pytest_twisted.inlineCallbacks
def test_token_never_logged(serve):
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        _, base = yield serve(token=TOKEN)
        yield fetch(base + "/health", headers={"Authorization": [f"Bearer {TOKEN}x"]})
        yield fetch(base + "/health", headers={"Authorization": [f"Bearer {TOKEN}"]})
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert any("refused" in (formatEvent(e) or "") for e in events)
    assert not any(TOKEN in repr(e) for e in events)


@pytest_twisted.inlineCallbacks
def test_unknown_path_404_and_other_methods_405(serve):
    _, base = yield serve()
    response, _ = yield fetch(base + "/nope")
    assert response.code == 404
    for method in (b"POST", b"PUT", b"DELETE"):
        response, _ = yield fetch(base + "/health", method=method)
        assert response.code == 405
        assert header(response, "allow") == "GET, HEAD"


def test_refuses_public_host_without_token(metrics):
    for host in ("0.0.0.0", "", "192.0.2.10", "ops.example.net", "::"):
        config = Config().replace("ops", host=host, port=0, token="")
        with pytest.raises(ConfigError, match="ops.token"):
            ops_service(config, metrics, {}, reactor)
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1"):
        ops_service(Config().replace("ops", host=host, port=0), metrics, {}, reactor)
    ops_service(Config().replace("ops", host="0.0.0.0", port=0, token=TOKEN), metrics, {},
                reactor)


# -- status page ------------------------------------------------------------------------------

@pytest_twisted.inlineCallbacks
def test_status_page_renders_and_escapes(serve, metrics):
    metrics.calls_active.set(3)
    metrics.smpp_bound.set(1)
    metrics.calls.labels(script="loyalty", outcome="completed").inc(5)
    metrics.redemptions.labels(channel="ivr").inc(2)
    metrics.job_runs.labels(job="expiry_warning").inc()
    metrics.job_failures.labels(job="expiry_warning").inc()

    def status():
        return {"<script>alert(1)</script>": "a & b", "版本": "积分 0.1"}

    _, base = yield serve({"data<b>base": lambda: (False, "<img src=x>")}, status=status)
    response, body = yield fetch(base + "/")
    assert response.code == 200
    assert header(response, "content-type") == "text/html; charset=utf-8"
    assert "default-src 'none'" in header(response, "content-security-policy")
    page = body.decode("utf-8")
    assert '<meta http-equiv="refresh" content="10">' in page
    assert "<script>" not in page and "<img" not in page and "data<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a &amp; b" in page and "&lt;img src=x&gt;" in page and "data&lt;b&gt;base" in page
    assert "版本" in page and "积分 0.1" in page
    assert "FAIL" in page
    assert "<tr><th>Active calls</th><td>3</td></tr>" in page
    assert "<tr><th>SMPP bound</th><td>yes</td></tr>" in page
    assert '<td>loyalty</td><td>completed</td><td class="num">5</td>' in page
    assert '<td>ivr</td><td class="num">2</td>' in page
    assert '<td>expiry_warning</td><td class="num">1</td><td class="num">1</td>' in page
    assert "http://" not in page and "https://" not in page  # no external assets


@pytest_twisted.inlineCallbacks
def test_status_page_survives_a_failing_status_callable(serve):
    def status():
        raise KeyError("boom")

    _, base = yield serve({"smpp": lambda: True}, status=status)
    response, body = yield fetch(base + "/")
    assert response.code == 200
    assert "unavailable: KeyError" in body.decode("utf-8")


def test_render_status_page_with_empty_registry():
    page = render_status_page(samples=collect_samples(Metrics().registry), health={}, extra={},
                              started_at=0, now=90061, refresh_seconds=10).decode("utf-8")
    assert "1970-01-01 00:00:00 UTC" in page and "1 d 1 h 1 min" in page
    assert "No checks configured." in page and "none yet" in page


@pytest_twisted.inlineCallbacks
def test_port_in_use_fails_at_start(serve, metrics):
    service, _ = yield serve()
    taken = service.port.getHost().port
    second = ops_service(Config().replace("ops", host="127.0.0.1", port=taken), metrics, {},
                         reactor)
    with pytest.raises(CannotListenError):
        second.startService()
