"""Notices a new prompt set (``loyalty prompts load``) while the server runs.

Asterisk reads the audio itself, so nothing needs reloading; what the server owes ops is to
notice: log the new version, re-check it against the ids the IVR plays, and show both on the
status page and in /health's detail; and to refresh the hotline's listing of recordings
(``prompts.presence``: which reward and courier names can be played). Polling, checking and
listing run off the reactor thread.
"""

from __future__ import annotations

from twisted.application.service import Service
from twisted.internet import task, threads
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ivr.prompt_ids import USED
from prompts.manifest import load_manifest
from prompts.presence import PromptPresence, available_ids
from prompts.store import active_root, check, current_set_version

log = Logger()


Found = tuple[str, str, list[str], dict[str, frozenset[str]]]


def _inspect(setting: str, known_version: str | None) -> Found | None:
    """(version, root, problems, ids with a recording by language) when the set changed since
    ``known_version``, else None."""
    root = active_root(setting)
    version = current_set_version(root)
    if version == known_version:
        return None
    problems = [p.message for p in check(load_manifest(), root, USED)]
    return version, str(root), problems, available_ids(root)


class PromptSetWatcher(Service):
    name = "prompt-watch"

    def __init__(self, setting: str, *, interval_s: float = 10.0,
                 reactor: IReactorTime, presence: PromptPresence | None = None) -> None:
        self.reactor = reactor
        self.presence = presence  # the IVR's listing of recordings, refreshed on a new set
        self.setting = setting
        self.interval_s = interval_s
        self.version: str | None = None
        self.root: str | None = None
        self.problems: list[str] = []
        self._loop: task.LoopingCall | None = None

    def startService(self) -> None:
        super().startService()
        self._loop = task.LoopingCall(self.poll)
        self._loop.clock = self.reactor
        self._loop.start(self.interval_s, now=True).addErrback(
            lambda f: log.failure("prompt watcher stopped", f))

    def stopService(self) -> None:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def poll(self):
        d = threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), _inspect,
                                      self.setting, self.version)
        d.addCallback(self._changed)
        d.addErrback(lambda f: log.failure("could not inspect the prompt set", f))
        return d

    def _changed(self, found: Found | None) -> None:
        if found is None:
            return
        first = self.version is None
        self.version, self.root, self.problems, ids = found
        if self.presence is not None:
            self.presence.update(ids)
        log.info("{what} prompt set {version} at {root}: {count} problem(s)",
                 what="using" if first else "new", version=self.version, root=self.root,
                 count=len(self.problems))
        for problem in self.problems[:10]:
            log.warn("prompt set: {problem}", problem=problem)

    def status(self) -> dict[str, str]:
        return {"prompt set": f"{self.version or '-'} ({self.root or '-'})",
                "prompt problems": str(len(self.problems))}

    def health(self) -> tuple[bool, str]:
        if self.version is None:
            return True, "not checked yet"
        return not self.problems, (f"set {self.version}" if not self.problems
                                   else f"set {self.version}: {self.problems[0]}")
