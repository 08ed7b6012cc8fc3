"""The provisioning simulator over real HTTP: it records every request and answers
idempotently (the same key twice: the same answer, never applied twice)."""

from __future__ import annotations

import json

import pytest_twisted
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.web.client import Agent

from core.cli import build_parser
from harness.provisioning_sim import REFUSAL, ProvisioningSim


async def post(sim: ProvisioningSim, key: str | None, body: dict) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    response = await HTTPClient(Agent(reactor)).post(sim.url(), data=json.dumps(body).encode(),
                                                     headers=headers)
    return response.code, json.loads(await response.content())


@pytest_twisted.ensureDeferred
async def test_answers_are_idempotent_per_key_in_every_mode():
    sim = ProvisioningSim("flaky")
    sim.listen(0)
    try:
        assert await post(sim, "O1", {"order_no": "O1"}) == \
            (503, {"error": "temporarily unavailable"})
        first = await post(sim, "O1", {"order_no": "O1"})
        assert first == (200, {"reference": "PRV000001"})
        sim.mode = "4xx"  # a key applied already keeps its answer
        assert await post(sim, "O1", {"order_no": "O1"}) == first
        assert await post(sim, "O2", {"order_no": "O2"}) == (422, {"reason": REFUSAL})
        sim.mode = "ok"  # a key refused already keeps its refusal
        assert await post(sim, "O2", {"order_no": "O2"}) == (422, {"reason": REFUSAL})
        assert (await post(sim, None, {}))[0] == 400
    finally:
        await sim.stop()
    assert sim.applied == {"O1": "PRV000001"}
    assert sim.keys() == ["O1", "O1", "O1", "O2", "O2", None]
    assert [r.status for r in sim.requests] == [503, 200, 200, 422, 422, 400]
    assert sim.requests[0].body == {"order_no": "O1"}


def test_loyalty_simulate_provisioning_takes_a_port_and_a_mode():
    args = build_parser().parse_args(["simulate", "provisioning", "--port", "9999",
                                      "--mode", "drop"])
    assert (args.port, args.mode) == (9999, "drop")
