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
        assert figures[f"sms_peer.node.{kind}.w10.open_loop.cpu_per_round_trip_us"]["value"] > 0


def test_each_server_run_is_next_to_its_echo_and_the_pairs_alternate_who_goes_first():
    from bench.sms_peer_bench import run_order

    assert [(rep, kinds, esme) for rep, _, kinds, esme in
            run_order(2, [50], ["balance", "mix"], quick=False)] == [
        (0, ["balance"], "server"), (0, ["balance"], "echo"),
        (0, ["mix"], "server"), (0, ["mix"], "echo"),
        (1, ["balance"], "echo"), (1, ["balance"], "server"),
        (1, ["mix"], "echo"), (1, ["mix"], "server")]
    assert run_order(1, [10, 50], ["balance", "mix"], quick=True) == [
        (0, 10, ["balance", "mix"], "server"), (0, 10, ["balance", "mix"], "echo"),
        (0, 50, ["balance", "mix"], "server"), (0, 50, ["balance", "mix"], "echo")]


def test_repeated_runs_report_the_median_of_each_pairs_ratio():
    from bench.common import Results
    from bench.sms_peer_bench import add_figures

    def run(rep, esme, per_s, p99):
        return dict(rep=rep, peer="node", window=50, esme=esme, set="balance", mode="closed",
                    per_s=per_s, p50_ms=1.0, p99_ms=p99, in_flight=50, round_trips=1000,
                    esme_cpu_s=0.3)
    # The machine ran fast in the second pair: each server run is compared with its own echo.
    rows = [run(0, "server", 3000, 20.0), run(0, "echo", 5000, 9.0),
            run(1, "server", 4000, 30.0), run(1, "echo", 8000, 9.0),
            run(2, "server", 3300, 25.0), run(2, "echo", 5000, 9.0)]
    results = Results("sms_peer", params={})
    add_figures(results, rows)
    figures = {f.name: f for f in results.figures}
    rate = figures["sms_peer.node.balance.w50.round_trips_per_s"]
    assert rate.value == 3300
    assert "ratio 0.60 (median of 0.60, 0.50, 0.66)" in rate.note
    assert figures["sms_peer.node.balance.w50.p99_ms"].value == 25.0
