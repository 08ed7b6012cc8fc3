"""Which prompt ids the active set has recordings for, per language (a cached listing).

The IVR asks ``PromptPresence.has(id, lang)`` before playing a name prompt (``reward_<code>``,
``courier_<code>``) so it can fall back to something else when there is no recording. The
answer comes from memory: the listing is made off the reactor thread (at start-up, before the
reactor runs, and by ``ivr.prompt_watch`` whenever the set changes) and swapped in whole.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def available_ids(root: str | os.PathLike) -> dict[str, frozenset[str]]:
    """``{lang: ids with a .wav}`` for every language directory of a prompt root (blocking:
    lists directories)."""
    root = Path(root)
    out: dict[str, frozenset[str]] = {}
    try:
        langs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:
        return out
    for lang_dir in langs:
        try:
            out[lang_dir.name] = frozenset(p.stem for p in lang_dir.glob("*.wav"))
        except OSError:
            out[lang_dir.name] = frozenset()
    return out


class PromptPresence:
    """The ids the active prompt set has, by language; replaced whole by ``update``."""

    def __init__(self, ids: Mapping[str, frozenset[str]] | None = None) -> None:
        self._ids: dict[str, frozenset[str]] = dict(ids or {})

    @classmethod
    def scan(cls, root: str | os.PathLike) -> PromptPresence:
        """A presence from a listing of ``root`` (blocking: not on the reactor thread)."""
        return cls(available_ids(root))

    def update(self, ids: Mapping[str, frozenset[str]]) -> None:
        self._ids = dict(ids)  # one assignment: a reader sees the old or the new listing

    def has(self, prompt_id: str, language: str) -> bool:
        return prompt_id in self._ids.get(language, frozenset())
