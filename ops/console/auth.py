"""Who is asking, and whether a form post really came from our own page.

- A request is someone's when it carries ``Authorization: Bearer <token>`` of a configured
  token, or the console session cookie of a login with one. The actor is the token's name
  (``[ops] tokens = {alice = "..."}``; the single ``ops.token`` is named ``ops``). With no
  token at all the endpoint is loopback-only and the actor is ``local``.
- Every browser gets a session (a random id in an HttpOnly, SameSite=Strict cookie). Its CSRF
  token is an HMAC of the session id and the actor's token under a per-process key, so it is
  worthless in another session, after a login as someone else, or after a restart. Every POST
  must carry it in the ``csrf`` field.

Sessions live in memory only: a restart logs everyone out, which is the safe direction.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

COOKIE = b"loyalty_console"
LOCAL_ACTOR = "local"
SESSION_SECONDS = 12 * 3600
MAX_SESSIONS = 2000  # anonymous sessions are cheap to make: keep the newest only


@dataclass
class Session:
    sid: str
    actor: str | None  # None: not logged in yet (only the login form is open to it)
    csrf: str
    expires: float
    flash: list[tuple[str, str]] = field(default_factory=list)  # (kind, text), shown once


class Sessions:
    """Console sessions by id; ``tokens`` is name -> token (empty: loopback, no tokens)."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        self._tokens = {name: token.encode("utf-8") for name, token in tokens.items()}
        self._key = secrets.token_bytes(32)
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    @property
    def token_required(self) -> bool:
        return bool(self._tokens)

    def name_of_token(self, presented: bytes) -> str | None:
        """The name of the token ``presented`` is, compared in constant time with each."""
        found = None
        for name, token in self._tokens.items():
            if hmac.compare_digest(presented, token):
                found = name
        return found

    def bearer(self, header: bytes) -> str | None:
        scheme, _, credentials = header.strip().partition(b" ")
        name = self.name_of_token(credentials.strip())
        return name if name is not None and scheme.lower() == b"bearer" else None

    def _csrf(self, sid: str, actor: str | None) -> str:
        secret = self._tokens.get(actor or "", b"")
        material = b"\0".join((sid.encode(), (actor or "").encode(),
                               hashlib.sha256(secret).digest()))
        return hmac.new(self._key, material, hashlib.sha256).hexdigest()

    def new(self, actor: str | None, now: float) -> Session:
        sid = secrets.token_urlsafe(24)
        session = Session(sid, actor, self._csrf(sid, actor), now + SESSION_SECONDS)
        self._sessions[sid] = session
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return session

    def get(self, sid: bytes | None, now: float) -> Session | None:
        if not sid:
            return None
        session = self._sessions.get(sid.decode("ascii", "replace"))
        if session is None or session.expires < now:
            return None
        return session

    def drop(self, session: Session) -> None:
        self._sessions.pop(session.sid, None)

    def csrf_ok(self, session: Session | None, presented: str) -> bool:
        if session is None:
            return False
        expected = self._csrf(session.sid, session.actor)
        return hmac.compare_digest(presented.encode(), expected.encode()) and \
            hmac.compare_digest(expected, session.csrf)
