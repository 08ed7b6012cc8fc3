"""The running server notices a newly loaded prompt set and checks it."""

import shutil
from pathlib import Path

import pytest_twisted
from twisted.internet import reactor

from ivr.prompt_watch import PromptSetWatcher
from prompts.store import DEFAULT_AUDIO_ROOT


@pytest_twisted.ensureDeferred
async def test_a_new_set_is_noticed_and_checked_without_a_restart(tmp_path):
    root = tmp_path / "prompts"
    shutil.copytree(DEFAULT_AUDIO_ROOT, root, symlinks=True)
    watcher = PromptSetWatcher(str(root), interval_s=3600, reactor=reactor)
    await watcher.poll()
    first = watcher.version
    assert first and watcher.problems == [] and watcher.health()[0]

    # Ops replace the zh set with one that lacks a prompt the IVR plays.
    zh = Path(root) / "zh"
    for ext in ("wav", "sln"):
        (zh.resolve() / f"welcome.{ext}").unlink()
    await watcher.poll()
    assert watcher.version != first
    assert any("welcome" in p for p in watcher.problems)
    ok, detail = watcher.health()
    assert not ok and "welcome" in detail
    assert watcher.status()["prompt problems"] == str(len(watcher.problems))
