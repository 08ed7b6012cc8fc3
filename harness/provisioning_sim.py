"""A provisioning API simulator: the operator's HTTP service that applies service and voucher
rewards, as ``ops/fulfilment.py`` calls it (docs/fulfilment.md).

``POST /`` (any path) with a JSON body and ``Idempotency-Key``. Every request is recorded
(key, body, answer). Answers are idempotent: a key once applied is answered with the same
reference again and never applied twice; a key once refused gets the same refusal. Modes:

- ``ok``: apply, 200 ``{"reference": "PRV000001"}``
- ``slow``: apply, but answer only after ``delay_s`` (a client timeout meanwhile)
- ``5xx``: 503, nothing applied
- ``4xx``: 422 ``{"reason": "not eligible for this offer"}``, refused for good
- ``drop``: close the connection without an answer, nothing applied
- ``flaky``: a key's first request gets 503, the next ones are applied

``loyalty simulate provisioning --port N --mode M`` runs it in the foreground
(``harness/provisioning_cli.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from twisted.web import resource, server

from harness.provisioning_cli import MODES

REFUSAL = "not eligible for this offer"


@dataclass
class Recorded:
    key: str | None
    body: dict[str, Any]
    status: int | None  # None: dropped, or still waiting to answer (slow)
    path: str = "/"
    headers: dict[str, str] = field(default_factory=dict)


class ProvisioningSim(resource.Resource):
    isLeaf = True

    def __init__(self, mode: str = "ok", *, delay_s: float = 30.0, reactor: Any = None,
                 echo: bool = False) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        self.mode = mode
        self.delay_s = delay_s
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.echo = echo
        self.requests: list[Recorded] = []
        self.key_modes: dict[str, str] = {}  # a mode for some keys only (tests)
        self.applied: dict[str, str] = {}  # key -> reference
        self.refused: dict[str, str] = {}  # key -> reason
        self._seen: set[str] = set()
        self.port: Any = None

    # -- running -----------------------------------------------------------------------------

    def listen(self, port: int = 0, interface: str = "127.0.0.1") -> int:
        self.port = self.reactor.listenTCP(port, server.Site(self), interface=interface)
        return self.port.getHost().port

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port.getHost().port}/provision"

    def stop(self) -> Any:
        return self.port.stopListening() if self.port is not None else None

    def keys(self) -> list[str | None]:
        return [r.key for r in self.requests]

    # -- the API -----------------------------------------------------------------------------

    def render_POST(self, request: server.Request) -> bytes | int:
        key = (request.getHeader("idempotency-key") or None)
        try:
            body = json.loads(request.content.read() or b"{}")
        except ValueError:
            body = {"unparsed": True}
        headers = {k.decode().lower(): v[0].decode()
                   for k, v in request.requestHeaders.getAllRawHeaders()}
        record = Recorded(key, body, None, request.path.decode(), headers)
        self.requests.append(record)
        if self.echo:
            print(f"{self.mode:5} key={key} {json.dumps(body, ensure_ascii=False)}", flush=True)
        if key is None:
            return self._answer(request, record, 400, {"reason": "Idempotency-Key missing"})
        if key in self.applied:
            return self._answer(request, record, 200, {"reference": self.applied[key]})
        if key in self.refused:
            return self._answer(request, record, 422, {"reason": self.refused[key]})
        first = key not in self._seen
        self._seen.add(key)
        mode = self.key_modes.get(key, self.mode)
        if mode == "5xx" or (mode == "flaky" and first):
            return self._answer(request, record, 503, {"error": "temporarily unavailable"})
        if mode == "4xx":
            self.refused[key] = REFUSAL
            return self._answer(request, record, 422, {"reason": REFUSAL})
        if mode == "drop":
            request.transport.abortConnection()
            return server.NOT_DONE_YET
        reference = self.applied[key] = f"PRV{len(self.applied) + 1:06d}"
        if mode == "slow":
            self.reactor.callLater(self.delay_s, self._late, request, record, reference)
            return server.NOT_DONE_YET
        return self._answer(request, record, 200, {"reference": reference})

    def _late(self, request: server.Request, record: Recorded, reference: str) -> None:
        if request.finished or request.channel is None:
            return  # the client gave up and closed the connection
        request.write(self._answer(request, record, 200, {"reference": reference}))
        request.finish()

    def _answer(self, request: server.Request, record: Recorded, status: int,
                payload: dict[str, Any]) -> bytes:
        record.status = status
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(payload).encode()
