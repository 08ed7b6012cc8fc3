"""The ops console in a real browser (Debian's chromium driven by Playwright) against the real
server (``twistd -n -y twistd.tac`` in its own process) on a real SQLite file.

Set ``LOYALTY_CONSOLE_SCREENSHOTS=docs/console`` to write the pages' screenshots there.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import wave
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from core.accounts import record_failed_secret
from core.config import load_config
from core.demo import load_demo
from core.rules import ProgrammeRules
from core.service_desk import record_ticket
from core.store import Store
from prompts import DEFAULT_AUDIO_ROOT

CHROMIUM = "/usr/bin/chromium"
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} missing: `make test` installs it (apt-get install chromium)",
                allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "alice-console-token"
MEMBER, LOCKED = "13800138000", "15800158000"
MISSING = ("en", "agent_closed")  # taken out of the test's prompt set
MISSING_REWARD = ("zh", "reward_a01")  # a reward's name (not a manifest id): taken out too
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = os.environ.get("LOYALTY_CONSOLE_SCREENSHOTS")


def tone_wav(rate: int, channels: int, seconds: float) -> bytes:
    """A clean 440 Hz tone at -12 dBFS."""
    t = np.arange(int(rate * seconds)) / rate
    mono = 0.25 * np.sin(2 * np.pi * 440 * t)
    pcm = (np.repeat(mono[:, None], channels, axis=1) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy


def http_code(url: str, token: str | None = None) -> int:
    """The status of a GET (0: nothing listens yet)."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}
                                     if token else {})
    try:
        with _DIRECT.open(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except urllib.error.URLError:
        return 0


def prompts_check(base: str) -> dict:
    """The running server's own view of its prompt set (its /health ``prompts`` check)."""
    request = urllib.request.Request(base + "/health",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with _DIRECT.open(request, timeout=5) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:  # 503 while a check fails
        body = exc.read()
    return json.loads(body)["checks"]["prompts"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The server on 0.0.0.0 (so a token is required) with demo data, an open make-up claim
    with a voice note, a locked PIN, and a prompt set missing one recording."""
    tmp = tmp_path_factory.mktemp("console")
    url = f"sqlite:///{tmp}/loyalty.sqlite3"
    config = load_config(environ={})
    rules = ProgrammeRules.from_config(config)
    now = datetime.now(UTC)
    (tmp / "note.wav").write_bytes(tone_wav(8000, 1, 2.0))
    store = Store(url)
    store.upgrade()
    with store.unit_of_work() as uow:
        load_demo(uow, rules, now)
    with store.unit_of_work() as uow:
        ref = record_ticket(uow, rules, MEMBER, "makeup", "", "ivr", now,
                            recording_path=str(tmp / "note.wav")).ref
        record_failed_secret(uow, rules, LOCKED, 99, now)
    store.dispose()
    prompts = tmp / "prompt-set"  # not "prompts": the cwd would shadow the package
    for lang in ("zh", "en"):
        shutil.copytree(DEFAULT_AUDIO_ROOT / lang, prompts / lang)
    for lang, prompt_id in (MISSING, MISSING_REWARD):
        for path in (prompts / lang).glob(f"{prompt_id}.*"):
            path.unlink()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
    env.update(LOYALTY_DATABASE_URL=url, LOYALTY_OPS_HOST="0.0.0.0", LOYALTY_OPS_PORT=str(port),
               LOYALTY_OPS_TOKENS=f"alice={TOKEN}", LOYALTY_FASTAGI_PORT="0",
               LOYALTY_SMPP_ENABLED="false", LOYALTY_JOBS_ENABLED="false",
               LOYALTY_PROMPTS_DIR=str(prompts), LOYALTY_LOGGING_FILE=str(tmp / "server.log"))
    output = (tmp / "stdout.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n",
         "--pidfile=", "-y", str(ROOT / "twistd.tac")], cwd=tmp, env=env,
        stdout=output, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while (http_code(base + "/health", TOKEN) not in (200, 503)
               or prompts_check(base)["detail"] == "not checked yet"):
            assert proc.poll() is None, (tmp / "stdout.log").read_text()
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        yield {"base": base, "ref": ref, "prompts": prompts, "log": tmp / "server.log"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        output.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page(server, browser):
    """A page logged in with the token through the login form, as a person would."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.goto(server["base"] + "/console/")
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url("**/console/tickets")
    yield page
    context.close()


def shot(page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=False)


def cell(page, lang: str, prompt_id: str):
    return page.locator(f"#p-{prompt_id} td[data-lang={lang}]")


def upload(page, prompt_id: str, lang: str, name: str, data: bytes) -> str:
    page.select_option("#upload-id", prompt_id)
    page.select_option("#upload-lang", lang)
    page.set_input_files("#upload-file", {"name": name, "mimeType": "audio/wav",
                                          "buffer": data})
    page.click("form.upload button[type=submit]")
    page.wait_for_load_state()
    return page.locator("p.flash").first.inner_text()


def playable_duration(page, lang: str, prompt_id: str) -> float:
    """Load the cell's <audio> and wait until the browser knows its duration."""
    return page.evaluate("""([lang, id]) => new Promise((ok, fail) => {
        const a = document.querySelector(`#p-${id} td[data-lang=${lang}] audio`);
        if (!a) return fail("no audio element");
        a.addEventListener("loadedmetadata", () => ok(a.duration));
        a.addEventListener("error", () => fail("media error " + (a.error && a.error.code)));
        a.preload = "auto"; a.load();
    })""", [lang, prompt_id])


def test_without_the_token_off_loopback_everything_is_refused(server, browser):
    for path in ("/console/prompts", "/console/tickets", "/health", "/metrics", "/"):
        assert http_code(server["base"] + path) == 401, path
    context = browser.new_context()
    anonymous = context.new_page()
    response = anonymous.goto(server["base"] + "/console/members?msisdn=" + MEMBER)
    assert response.status == 401
    assert MEMBER not in anonymous.content()
    anonymous.fill("input[name=token]", "not-the-token")
    anonymous.click("button[type=submit]")
    assert "not one of the configured ops tokens" in anonymous.content()
    shot(anonymous, "login")
    context.close()


def test_uploaded_44k_stereo_wav_makes_a_missing_prompt_present_and_playable(server, page):
    lang, prompt_id = MISSING
    assert f"{lang}/{prompt_id}" in prompts_check(server["base"])["detail"]
    page.goto(server["base"] + "/console/prompts")
    assert cell(page, lang, prompt_id).get_attribute("data-state") == "missing"
    said = upload(page, prompt_id, lang, "closed-hours.wav", tone_wav(44100, 2, 1.5))
    assert said.startswith("Loaded:"), said
    assert cell(page, lang, prompt_id).get_attribute("data-state") == "present"
    assert "1.5 s" in cell(page, lang, prompt_id).inner_text()
    assert playable_duration(page, lang, prompt_id) == pytest.approx(1.5, abs=0.05)
    # The running server notices the new set as after `loyalty prompts load` (within 10 s).
    deadline = time.monotonic() + 15
    while not prompts_check(server["base"])["ok"]:
        assert time.monotonic() < deadline, prompts_check(server["base"])
        time.sleep(0.5)
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "prompts")


def test_a_44k_stereo_wav_for_a_missing_reward_prompt_makes_it_present_and_playable(server,
                                                                                      page):
    lang, prompt_id = MISSING_REWARD
    page.goto(server["base"] + "/console/prompts")
    assert "reward A01" in page.locator(f"#p-{prompt_id}").inner_text()
    assert "courier SF" in page.locator("#p-courier_sf").inner_text()
    assert cell(page, lang, prompt_id).get_attribute("data-state") == "missing"
    said = upload(page, prompt_id, lang, "a01.wav", tone_wav(44100, 2, 0.8))
    assert said.startswith("Loaded:"), said
    assert cell(page, lang, prompt_id).get_attribute("data-state") == "present"
    assert playable_duration(page, lang, prompt_id) == pytest.approx(0.8, abs=0.05)


def test_a_corrupt_upload_is_refused_with_the_reason_and_the_old_prompt_stays(server, page):
    lang, prompt_id = "zh", "agent_transfer"
    live = server["prompts"] / lang / f"{prompt_id}.wav"
    before = hashlib.sha256(live.read_bytes()).hexdigest()
    page.goto(server["base"] + "/console/prompts")
    duration = playable_duration(page, lang, prompt_id)
    said = upload(page, prompt_id, lang, "broken.wav", b"RIFF\x10\x00\x00\x00WAVEjunkjunk")
    assert said.startswith("Refused: broken.wav: cannot be read"), said
    assert "were not changed" in said
    assert cell(page, lang, prompt_id).get_attribute("data-state") == "present"
    assert hashlib.sha256(live.read_bytes()).hexdigest() == before
    assert playable_duration(page, lang, prompt_id) == pytest.approx(duration, abs=0.01)
    said = upload(page, prompt_id, lang, "notes.txt", b"hello")
    assert "not an audio file type we know" in said


def test_resolving_a_claim_with_credit_shows_in_the_members_balance(server, page):
    page.goto(server["base"] + f"/console/members?msisdn={MEMBER}")
    before = int(page.inner_text("#balance").split()[0])
    page.goto(server["base"] + "/console/tickets")
    ticket = page.locator(f"#t-{server['ref']}")
    assert ticket.locator("audio").evaluate(
        "a => new Promise(ok => { a.onloadedmetadata = () => ok(a.duration); a.load(); })"
    ) == pytest.approx(2.0, abs=0.05)  # the voice note plays
    shot(page, "tickets")
    ticket.locator("input[name=outcome]").fill("Missing points for October found")
    ticket.locator("input[name=credit]").fill("250")
    ticket.locator("button[type=submit]").click()
    page.wait_for_load_state()
    assert "250 points credited" in page.locator("p.flash").first.inner_text()
    page.goto(server["base"] + f"/console/members?msisdn={MEMBER}")
    assert int(page.inner_text("#balance").split()[0]) == before + 250
    assert "resolved" in page.inner_text("section.member")
    log = server["log"].read_text(encoding="utf-8")
    assert f"console: alice resolved ticket {server['ref']} of 138****8000" in log
    assert MEMBER not in log


def test_a_locked_pin_is_unlocked_from_the_members_page(server, page):
    page.goto(server["base"] + f"/console/members?msisdn={LOCKED}")
    assert "locked" in page.inner_text("#pin")
    shot(page, "member")
    page.click("#pin button")
    page.wait_for_load_state()
    assert "PIN unlocked" in page.locator("p.flash").first.inner_text()
    assert page.inner_text("#pin").strip() == "set, not locked"


def test_queues_and_charts_pages_render(server, page):
    page.goto(server["base"] + "/console/queues")
    assert "Outbox depth" in page.content()
    shot(page, "queues")
    page.goto(server["base"] + "/console/charts")
    assert page.locator("figure.chart svg").count() == 6  # picture: harness.console_charts_demo
