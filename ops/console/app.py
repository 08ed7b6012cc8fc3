"""The ops console: routing, who is asking, CSRF on every post, replies.

Mounted by ``ops.http.OpsResource`` under ``/console/``. Each page is an ``async def`` in
``ops.console.pages`` taking a :class:`Ask` and returning a :class:`Reply`; reads and actions
are core use cases run on the database thread (``DatabaseService.run``), file work on the
reactor's thread pool. Every action is logged with the actor's name and masked numbers.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.web.server import Request

from core.config import Config
from core.domain import mask_msisdn
from ops.console.auth import COOKIE, LOCAL_ACTOR, Session, Sessions
from ops.console.charts import MetricsRing
from ops.console.forms import Form, FormError, parse_form

log = Logger(namespace="loyalty.console")

HERE = Path(__file__).parent
_HTML = b"text/html; charset=utf-8"
_CSP = (b"default-src 'none'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
        b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


@dataclass
class Reply:
    code: int = 200
    content_type: bytes = _HTML
    body: bytes = b""
    headers: dict[bytes, bytes] = field(default_factory=dict)


@dataclass
class Ask:
    """One request to the console, once we know who asks."""

    request: Request
    session: Session
    actor: str
    form: Form
    now: datetime

    def arg(self, name: str, default: str = "") -> str:
        values = self.request.args.get(name.encode(), [])
        return values[0].decode("utf-8", "replace").strip() if values else default


Page = Callable[["Console", Ask], Awaitable[Reply]]


@functools.cache
def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                      auto_reload=False)
    env.filters["masked"] = mask_msisdn
    env.filters["when"] = lambda t: "-" if t is None else f"{t:%Y-%m-%d %H:%M} UTC"
    return env


class Console:
    def __init__(self, *, db: Any, config: Config, ring: MetricsRing, reactor: Any,
                 sessions: Sessions) -> None:
        from ops.console import pages

        self.db = db
        self.reactor = reactor
        self.ring = ring
        self.sessions = sessions
        self.prompts_setting = config.prompts.dir
        self.tier_ids = [f"tier_{tier.code}" for tier in config.tiers]
        self.get_routes: dict[bytes, Page] = pages.GET_ROUTES
        self.post_routes: dict[bytes, Page] = pages.POST_ROUTES

    # -- helpers the pages use ------------------------------------------------------------

    def read(self, use_case: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred:
        return self.db.run(use_case, *args, write=False, **kwargs)

    def write(self, use_case: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred:
        return self.db.run(use_case, *args, **kwargs)

    def blocking(self, fn: Callable[..., Any], *args: Any) -> Deferred:
        """File and audio work: off the reactor, off the database pool."""
        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), fn, *args)

    def page(self, ask: Ask | None, template: str, *, code: int = 200,
             session: Session | None = None, **values: Any) -> Reply:
        session = session or (ask.session if ask else None)
        flash = list(session.flash) if session else []
        if session:
            session.flash.clear()  # shown once
        body = _environment().get_template(template).render(
            actor=ask.actor if ask else None, csrf=session.csrf if session else "",
            flash=flash, **values)
        return Reply(code, _HTML, body.encode("utf-8"))

    @staticmethod
    def redirect(ask: Ask, location: str, kind: str = "", text: str = "") -> Reply:
        if text:
            ask.session.flash.append((kind, text))
        return Reply(303, b"text/plain; charset=utf-8", b"see other\n",
                     {b"location": location.encode("utf-8")})

    @staticmethod
    def action(ask: Ask, what: str, **fields: Any) -> None:
        """Log one action with who did it (numbers masked by the caller)."""
        log.info("console: {actor} " + what, actor=ask.actor, **fields)

    # -- the request ----------------------------------------------------------------------

    def handle(self, request: Request) -> Deferred:
        return Deferred.fromCoroutine(self._handle(request))

    async def _handle(self, request: Request) -> tuple[int, bytes, bytes]:
        reply = await self._route(request)
        request.setHeader(b"content-security-policy", _CSP)
        request.setHeader(b"x-frame-options", b"DENY")
        request.setHeader(b"referrer-policy", b"no-referrer")
        for name, value in reply.headers.items():
            request.setHeader(name, value)
        return reply.code, reply.content_type, reply.body

    async def _route(self, request: Request) -> Reply:
        path = request.path
        if path == b"/console":
            return Reply(301, b"text/plain", b"moved\n", {b"location": b"/console/"})
        if path.startswith(b"/console/static/"):
            return _static(path)
        seconds = self.reactor.seconds()
        now = datetime.fromtimestamp(seconds, UTC)
        session, actor = self._who(request, seconds)
        if request.method == b"POST":
            try:
                form = parse_form(request.getHeader(b"content-type") or b"",
                                  request.content.read() if request.content else b"")
            except FormError as exc:
                return Reply(400, b"text/plain; charset=utf-8", f"{exc}\n".encode())
            if not self.sessions.csrf_ok(session, form.get("csrf")):
                log.warn("console: post to {path} refused: CSRF token missing or wrong "
                         "(actor {actor}, client {client})", path=_path(request),
                         actor=actor or "-", client=_client(request))
                return Reply(403, b"text/plain; charset=utf-8",
                             b"refused: the form's CSRF token is missing or out of date; "
                             b"reload the page and try again\n")
        else:
            form = Form({}, {})
        if session is None:
            session = self._new_session(request, actor, seconds)
        if actor is None:
            if path == b"/console/login" and request.method == b"POST":
                return self._login(request, session, form, seconds)
            ask = Ask(request, session, "-", form, now)
            return self.page(ask, "login.html.j2", code=401, failed=False)
        ask = Ask(request, session, actor, form, now)
        routes = self.post_routes if request.method == b"POST" else self.get_routes
        if request.method not in (b"GET", b"HEAD", b"POST"):
            return Reply(405, b"text/plain", b"method not allowed\n", {b"allow": b"GET, POST"})
        page = routes.get(path)
        if page is None:
            return Reply(404, b"text/plain", b"not found\n")
        return await page(self, ask)

    def _who(self, request: Request, seconds: float) -> tuple[Session | None, str | None]:
        """(the session, the actor or None when nobody authenticated)."""
        session = self.sessions.get(request.getCookie(COOKIE), seconds)
        header = request.getHeader(b"authorization")
        bearer = self.sessions.bearer(header or b"")
        if header is not None and bearer is None:
            return None, None  # a wrong token is refused, whatever cookie comes with it
        if bearer is not None:
            if session is None or session.actor != bearer:
                session = None  # a new one, made for this token's holder
            return session, bearer
        if not self.sessions.token_required:
            return session, LOCAL_ACTOR  # loopback only, nobody needs to log in
        if session is not None and session.actor is not None:
            return session, session.actor
        return session, None

    def _new_session(self, request: Request, actor: str | None, seconds: float) -> Session:
        session = self.sessions.new(actor, seconds)
        request.addCookie(COOKIE, session.sid.encode(), path=b"/console", httpOnly=True,
                          sameSite="strict")
        return session

    def _login(self, request: Request, session: Session, form: Form, seconds: float) -> Reply:
        name = self.sessions.name_of_token(form.get("token").strip().encode("utf-8"))
        if name is None:
            log.warn("console: login refused (wrong token) from {client}",
                     client=_client(request))
            ask = Ask(request, session, "-", form, datetime.fromtimestamp(seconds, UTC))
            return self.page(ask, "login.html.j2", code=401, failed=True)
        self.sessions.drop(session)  # a fresh id after login: no fixation
        self._new_session(request, name, seconds)
        log.info("console: {actor} logged in from {client}", actor=name, client=_client(request))
        return Reply(303, b"text/plain", b"see other\n", {b"location": b"/console/"})


_STATIC = {b"/console/static/console.css": b"text/css; charset=utf-8"}


def _static(path: bytes) -> Reply:
    content_type = _STATIC.get(path)
    if content_type is None:
        return Reply(404, b"text/plain", b"not found\n")
    body = (HERE / "static" / path.rsplit(b"/", 1)[1].decode()).read_bytes()
    return Reply(200, content_type, body, {b"cache-control": b"max-age=300"})


def _path(request: Request) -> str:
    return request.path.decode("utf-8", "replace")


def _client(request: Request) -> str:
    peer = request.getClientAddress()
    return getattr(peer, "host", str(peer))
