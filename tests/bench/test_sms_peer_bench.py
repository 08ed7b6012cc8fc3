"""The SMS bench against the node SMSC (npm smpp) produces figures, for the server and its floor.

A tiny run of ``bench.sms_peer_bench``: the real server and the bare smpplib echo ESME each
bind to ``bench/smsc_node/smsc.js``, which injects MO for both keyword sets and times the
replies. Skipped only when node itself is absent (it is present in CI); its node_modules come
from ``make test`` (``npm ci --prefix bench/smsc_node``), or are installed here if missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.sms_peer_bench import MIX, keyword_texts
from core.messaging import keywords as kw

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "bench" / "smsc_node"

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


def test_every_bench_text_asks_what_it_should_and_none_repeats():
    expected = {"JF": kw.BALANCE, "DJ": kw.TIER, "MX": kw.HISTORY, "LB": kw.CATALOGUE,
                "WL": kw.DELIVERY}
    balance, mix = keyword_texts("balance"), keyword_texts("mix")
    assert {kw.parse(t).kind for t in balance} == {kw.BALANCE}
    assert len(set(balance)) == len(balance) >= 84
    assert len(set(mix)) == len(mix)
    # the mix cycles the five keywords: five consecutive texts ask five different things
    assert [kw.parse(t).kind for t in mix[:5]] == [expected[k] for k in MIX]
    assert {kw.parse(t).kind for t in mix} == set(expected.values())


@pytest.fixture(scope="module")
def node_smsc():
    if not (NODE_DIR / "node_modules" / "smpp").is_dir():
        subprocess.run(["npm", "ci", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund"],
                       check=True, timeout=300)
    return NODE_DIR


def test_node_smsc_bench_measures_the_server_and_the_echo_floor(node_smsc):
    done = subprocess.run(
        [sys.executable, "-m", "bench.sms_peer_bench", "--peers", "node", "--windows", "10",
         "--members", "300", "--in-flight", "10", "--rate", "50", "--duration", "1.5",
         "--warmup", "0.5", "--drain", "3", "--json"],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True,
        timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    runs = report["params"]["runs"]
    # server and echo, both keyword sets, closed and open loop: eight runs
    assert {(r["esme"], r["set"], r["mode"]) for r in runs} == {
        (e, s, m) for e in ("server", "echo") for s in ("balance", "mix")
        for m in ("closed", "open")}
    for r in runs:
        assert r["peer"] == "node" and r["window"] == 10
        assert r["round_trips"] > 0, r      # every MO kind got its reply MT
        assert r["p99_ms"] > 0 and r["mo_errors"] == 0, r
        assert r["esme_cpu_s"] > 0, r
        if r["mode"] == "closed":
            assert r["lost"] == 0, r        # no MO went unanswered
    figures = {f["name"]: f for f in report["figures"]}
    for kind in ("balance", "mix"):
        rate = figures[f"sms_peer.node.{kind}.w10.round_trips_per_s"]
        assert rate["value"] > 0 and "echo" in rate["note"] and "ratio" in rate["note"]
        assert figures[f"sms_peer.node.{kind}.w10.cpu_per_round_trip_us"]["value"] > 0
        assert figures[f"sms_peer.node.{kind}.w10.open_loop.p99_ms"]["value"] > 0
