"""The ops console over real TCP on a real database: CSRF on every post, who did what in the
log (numbers masked), named tokens and sessions, and the actions' effects."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.logger import formatEvent, globalLogPublisher
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from core.accounts import balance, record_failed_secret
from core.config import Config, ConfigError, load_config
from core.demo import load_demo
from core.metrics import Metrics
from core.rules import ProgrammeRules
from core.service_desk import record_ticket
from core.store import Store
from ops import ops_service
from ops.dbservice import DatabaseService
from sms.esme_types import MOMessage
from sms.handler import store_mo_batch

MEMBER = "13800138000"
ALICE, BOB = "alice-token-123", "bob-token-4567"

pytestmark = pytest.mark.filterwarnings("ignore:Using readBody:DeprecationWarning")


class Browser:
    """Keeps the console cookie like a browser; optional bearer token."""

    def __init__(self, base: str, token: str | None = None) -> None:
        self.base, self.token, self.cookie = base, token, None

    @defer.inlineCallbacks
    def request(self, method: bytes, path: str, form: dict | None = None):
        headers = Headers()
        if self.token:
            headers.addRawHeader(b"authorization", f"Bearer {self.token}".encode())
        if self.cookie:
            headers.addRawHeader(b"cookie", self.cookie)
        body = None
        if form is not None:
            from io import BytesIO

            from twisted.web.client import FileBodyProducer

            headers.addRawHeader(b"content-type", b"application/x-www-form-urlencoded")
            body = FileBodyProducer(BytesIO(urlencode(form).encode()))
        response = yield Agent(reactor).request(method, (self.base + path).encode(), headers,
                                                body)
        for value in response.headers.getRawHeaders(b"set-cookie") or []:
            self.cookie = value.split(b";")[0]
        text = (yield readBody(response)).decode("utf-8")
        return response, text

    def get(self, path):
        return self.request(b"GET", path)

    def post(self, path, form):
        return self.request(b"POST", path, form)


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)


@pytest.fixture
def console(database_url, config, now):
    """A started ops endpoint with the console on a real store; yields a starter."""
    started = []
    store = Store(database_url)
    rules = ProgrammeRules.from_config(config)
    with store.unit_of_work() as uow:
        load_demo(uow, rules, now)

    @defer.inlineCallbacks
    def start(**ops):
        cfg = config.replace("database", url=database_url).replace(
            "ops", host="127.0.0.1", port=0, **ops)
        db = DatabaseService(store, rules, reactor)
        db.startService()
        service = ops_service(cfg, Metrics(), {}, reactor, db=db)
        service.startService()
        started.append((service, db))
        port = yield service.whenListening()
        return f"http://127.0.0.1:{port.getHost().port}"

    start.store, start.rules = store, rules
    yield start
    for service, db in started:
        pytest_twisted.blockon(service.stopService())
        pytest_twisted.blockon(db.stopService())


def open_claim(console, now) -> str:
    with console.store.unit_of_work() as uow:
        return record_ticket(uow, console.rules, MEMBER, "makeup", "missing points", "sms",
                             now).ref


def points(console, now) -> int:
    with console.store.unit_of_work() as uow:
        return balance(uow, console.rules, MEMBER, now).points


@pytest_twisted.inlineCallbacks
def test_a_post_without_the_sessions_csrf_token_changes_nothing(console, now):
    base = yield console(tokens={"alice": ALICE})
    ref = open_claim(console, now)
    before = points(console, now)
    alice = Browser(base, ALICE)
    _, page = yield alice.get("/console/tickets")
    good = csrf_of(page)
    form = {"ref": ref, "outcome": "granted", "credit": "50"}
    response, text = yield alice.post("/console/tickets/resolve", form)  # no token at all
    assert response.code == 403 and "CSRF" in text
    other = Browser(base, ALICE)  # the same person's other session: its token is not this one
    _, other_page = yield other.get("/console/tickets")
    response, _ = yield alice.post("/console/tickets/resolve",
                                   {**form, "csrf": csrf_of(other_page)})
    assert response.code == 403
    bob = Browser(base, BOB)  # a stranger's session cookie with alice's page token
    bob.cookie = alice.cookie
    response, _ = yield bob.post("/console/tickets/resolve", {**form, "csrf": good})
    assert response.code in (401, 403)
    assert points(console, now) == before
    response, _ = yield alice.post("/console/tickets/resolve", {**form, "csrf": good})
    assert response.code == 303
    assert points(console, now) == before + 50
    _, page = yield alice.get("/console/tickets?all=1")
    assert "50 points credited" in page


@pytest_twisted.inlineCallbacks
def test_every_action_is_logged_with_who_did_it_and_no_full_number(console, now):
    base = yield console(tokens={"alice": ALICE}, token=BOB)  # the old token is named "ops"
    ref = open_claim(console, now)
    with console.store.unit_of_work() as uow:
        # Locked from now on the wall clock, which the console reads.
        record_failed_secret(uow, console.rules, MEMBER, 99, datetime.now(UTC))
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        alice, old = Browser(base, ALICE), Browser(base, BOB)
        _, page = yield alice.get(f"/console/members?msisdn={MEMBER}")
        assert "locked" in page and "Unlock PIN" in page
        response, _ = yield alice.post("/console/members/unlock",
                                       {"msisdn": MEMBER, "csrf": csrf_of(page)})
        assert response.code == 303
        _, page = yield old.get("/console/tickets")
        response, _ = yield old.post("/console/tickets/resolve",
                                     {"ref": ref, "outcome": "no points were missing",
                                      "csrf": csrf_of(page)})
        assert response.code == 303
        _, page = yield alice.get(f"/console/members?msisdn={MEMBER}")
        assert "set, not locked" in page
    finally:
        globalLogPublisher.removeObserver(events.append)
    lines = [formatEvent(e) or "" for e in events]
    assert any(line.startswith("console: alice unlocked the PIN of 138****8000")
               for line in lines), lines
    assert any(line.startswith(f"console: ops resolved ticket {ref} of 138****8000")
               for line in lines), lines
    assert not any(MEMBER in line for line in lines)
    assert not any(ALICE in repr(e) or BOB in repr(e) for e in events)


@pytest_twisted.inlineCallbacks
def test_login_with_a_token_gives_a_session_and_logout_ends_it(console):
    base = yield console(tokens={"alice": ALICE})
    browser = Browser(base)
    response, page = yield browser.get("/console/queues")
    assert response.code == 401 and 'name="token"' in page
    response, page = yield browser.post("/console/login",
                                        {"token": "wrong-token", "csrf": csrf_of(page)})
    assert response.code == 401 and "not one of the configured" in page
    response, _ = yield browser.post("/console/login", {"token": ALICE, "csrf": csrf_of(page)})
    assert response.code == 303
    response, page = yield browser.get("/console/queues")
    assert response.code == 200 and "alice" in page
    response, _ = yield browser.post("/console/logout", {"csrf": csrf_of(page)})
    assert response.code == 303
    response, _ = yield browser.get("/console/queues")
    assert response.code == 401
    response, _ = yield Browser(base).get("/health")  # the rest of the endpoint: bearer only
    assert response.code == 401


@pytest_twisted.inlineCallbacks
def test_queue_items_retried_and_discarded(console, now):
    base = yield console()  # loopback without tokens: the actor is "local"
    with console.store.unit_of_work() as uow:
        uow.jobs.job_set_item_aside("expiry_warnings", "2026-11-22", MEMBER, "boom", now)
        uow.jobs.job_set_item_aside("expiry_warnings", "2026-11-22", "13900139000", "bang", now)
        store_mo_batch(uow, console.rules, [MOMessage(MEMBER, "10086", "JF", True, None, "JF",
                                                      0, 0, "k1")], now)
        uow.commit()
        mo = uow.messaging.claim_mo(1)[0].id
        uow.messaging.mo_set_aside(mo, 4, "OperationalError: integer overflow", now)
        uow.outbox.queue_message(msisdn=MEMBER, language="zh", kind="test", now=now, body="x")
        items = [i.item for i in uow.set_aside_items() if i.item.startswith("job:")]
    browser = Browser(base)
    _, page = yield browser.get("/console/queues")
    assert "boom" in page and "bang" in page and "138****8000" in page
    assert f"mo:{mo}" in page and "OperationalError: integer overflow" in page
    assert "1 MT message(s) not yet accepted" in page
    assert MEMBER not in page
    response, _ = yield browser.post("/console/queues/retry",
                                     {"item": items[0], "csrf": csrf_of(page)})
    assert response.code == 303
    _, page = yield browser.get("/console/queues")
    assert "off the list" in page and "boom" not in page
    yield browser.post("/console/queues/discard", {"item": items[1], "csrf": csrf_of(page)})
    _, page = yield browser.get("/console/queues")
    assert f"{items[1]}: discarded" in page and "bang" not in page
    response, page = yield browser.post("/console/queues/discard",
                                        {"item": items[1], "csrf": csrf_of(page)})
    _, page = yield browser.get("/console/queues")
    assert "nothing set aside under that name" in page


@pytest_twisted.inlineCallbacks
def test_resolving_twice_or_crediting_a_complaint_is_refused_with_the_reason(console, now):
    base = yield console()
    with console.store.unit_of_work() as uow:
        complaint = record_ticket(uow, console.rules, MEMBER, "complaint", "rude agent", "sms",
                                  now).ref
    browser = Browser(base)
    _, page = yield browser.get("/console/tickets")
    yield browser.post("/console/tickets/resolve", {"ref": complaint, "outcome": "sorry",
                                                    "credit": "10", "csrf": csrf_of(page)})
    _, page = yield browser.get("/console/tickets")
    assert "only a make-up claim can be credited" in page
    yield browser.post("/console/tickets/resolve", {"ref": complaint, "outcome": "sorry",
                                                    "csrf": csrf_of(page)})
    yield browser.post("/console/tickets/resolve", {"ref": complaint, "outcome": "again",
                                                    "csrf": csrf_of(page)})
    _, page = yield browser.get("/console/tickets")
    assert "already resolved" in page


def test_named_tokens_from_the_file_and_the_environment(tmp_path):
    from core.config import DEFAULT_PATH

    path = tmp_path / "c.toml"
    default = DEFAULT_PATH.read_text(encoding="utf-8")
    path.write_text(re.sub(r"\[ops\][^\[]*", '[ops]\nhost = "0.0.0.0"\n'
                           'tokens = {alice = "alice-token-1"}\ntoken = "old-single-token"\n\n',
                           default), encoding="utf-8")
    config = load_config(path, environ={})
    assert config.ops.named_tokens() == {"alice": "alice-token-1", "ops": "old-single-token"}
    config = load_config(path, environ={"LOYALTY_OPS_TOKENS": "bob=bob-token-22,eve=eve-tok-333",
                                        "LOYALTY_OPS_TOKEN": ""})
    assert config.ops.named_tokens() == {"bob": "bob-token-22", "eve": "eve-tok-333"}
    for bad, message in (("alice=short", "at least 8"), ("a b=long-enough-1", "not a name"),
                         ("x=same-token-1,y=same-token-1", "share one token"),
                         ("nonsense", "name=value")):
        with pytest.raises(ConfigError, match=message):
            load_config(path, environ={"LOYALTY_OPS_TOKENS": bad})
    ops_service(Config().replace("ops", host="0.0.0.0", port=0, tokens={"a": "a-token-1"}),
                Metrics(), {}, reactor)


def test_pin_lock_needs_time_to_pass_without_unlock(console, now):
    # The unlock use case is what lifts a lock early; without it the lock holds.
    from core.accounts import lock_in_force, unlock_pin

    with console.store.unit_of_work() as uow:
        record_failed_secret(uow, console.rules, MEMBER, 99, now)
    with console.store.unit_of_work() as uow:
        assert lock_in_force(uow.members.get_member(MEMBER), now + timedelta(minutes=1))
        assert unlock_pin(uow, console.rules, MEMBER, now) is True
    with console.store.unit_of_work() as uow:
        assert lock_in_force(uow.members.get_member(MEMBER), now) is None
        assert unlock_pin(uow, console.rules, MEMBER, now) is False


@pytest_twisted.inlineCallbacks
def test_lists_show_numbers_masked_and_lookups_explain_refusals(console, now):
    base = yield console()
    ref = open_claim(console, now)
    browser = Browser(base)
    _, page = yield browser.get("/console/tickets")
    assert "138****8000" in page and MEMBER not in page  # not even in a link
    _, page = yield browser.get(f"/console/members?ticket={ref}")
    assert f"{MEMBER} · " in page and 'id="balance"' in page  # full on the member's own page
    _, page = yield browser.get("/console/members?msisdn=13600136000")
    assert "no member 136****6000" in page and "13600136000 ·" not in page
    _, page = yield browser.get("/console/members?msisdn=12345")
    assert "give a mobile number such as" in page


def test_multipart_form_keeps_file_names_and_fields():
    from ops.console.forms import FormError, parse_form

    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\nabc\r\n"
            b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a b.wav\"\r\n"
            b"Content-Type: audio/wav\r\n\r\nRIFF\x00\x01\xff\r\n--XyZ--\r\n")
    form = parse_form(b"multipart/form-data; boundary=XyZ", body)
    assert form.get("csrf") == "abc"
    assert form.files["file"].filename == "a b.wav"
    assert form.files["file"].data == b"RIFF\x00\x01\xff"
    assert parse_form(b"application/x-www-form-urlencoded", b"a=1&b=%E4%BD%A0").fields == {
        "a": "1", "b": "你"}
    with pytest.raises(FormError, match="too large"):
        parse_form(b"", b"x" * (20 * 1024 * 1024 + 1))


@pytest_twisted.inlineCallbacks
def test_members_page_shows_the_line_status_and_a_closed_lines_account(console):
    base = yield console()
    with console.store.unit_of_work() as uow:
        uow.members.update_member(MEMBER, line_status="suspended", subscriber_id="S-778")
        uow.members.update_member("13900139000", line_status="closed")
    browser = Browser(base)
    _, page = yield browser.get(f"/console/members?msisdn={MEMBER}")
    assert re.search(r'id="line"><strong class="line-suspended">suspended</strong>, '
                     r'subscriber S-778', page)
    assert 'id="balance"' in page and "Tier" in page
    _, page = yield browser.get("/console/members?msisdn=13900139000")
    assert "The line is closed" in page and "points (not shown to anyone)" in page


@pytest_twisted.inlineCallbacks
def test_fulfilment_state_on_the_members_page_and_the_queue_with_its_last_error(console):
    from core.fulfilment import Attempt, RetryPolicy, claim_fulfilments, record_attempt
    from core.redemption import redeem

    base = yield console()
    now = datetime.now(UTC)
    rules = console.rules
    with console.store.unit_of_work() as uow:
        applied = redeem(uow, rules, MEMBER, "A01", "sms", "c1", now).order_no
        waiting = redeem(uow, rules, MEMBER, "A01", "sms", "c2", now).order_no
    policy = RetryPolicy(max_attempts=5, backoff_base_s=30, backoff_cap_s=600)
    with console.store.unit_of_work() as uow:
        for item in claim_fulfilments(uow, rules, now, 60, 10):
            attempt = (Attempt("applied", "OP-77", 200) if item.order_no == applied
                       else Attempt("error", "503 Service Unavailable", 503))
            record_attempt(uow, rules, item, attempt, policy, now)
    browser = Browser(base)
    _, page = yield browser.get(f"/console/members?msisdn={MEMBER}")
    assert re.search(rf'id="o-{applied}">.*?fulfilled</td>\s*<td>reference OP-77', page, re.S)
    assert re.search(rf'id="o-{waiting}">.*?confirmed</td>\s*<td><span class="problem">'
                     r"503 Service Unavailable", page, re.S)
    _, page = yield browser.get("/console/queues")
    assert "2 service or voucher order(s) waiting" in page  # ours and the demo's
    assert waiting in page and applied not in page and "503 Service Unavailable" in page
    assert MEMBER not in page
