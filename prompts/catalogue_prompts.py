"""The recorded names of rewards and couriers: dynamic prompt ids, not in the manifest.

Stable names (the ops console and ``loyalty prompts check`` use them):

- ``reward_prompt_id(code)`` -> ``"reward_<code>"``, e.g. ``A01`` -> ``reward_a01``;
- ``courier_prompt_id(code)`` -> ``"courier_<code>"``, e.g. ``SF`` -> ``courier_sf``;
- ``catalogue_prompt_ids(reward_codes, courier_codes) -> list[str]``: the ids those codes
  need, sorted, without repeats (a code that makes no valid id, e.g. only Chinese characters,
  is left out: it can only be spelled or replaced by a generic phrase);
- ``is_name_prompt_id(prompt_id)``: True for an id of this kind (``prompts load`` accepts
  such files although the manifest does not list them);
- ``missing_name_prompts(root, languages, reward_codes, courier_codes) -> list[str]``: one
  line per id without a usable recording, e.g. ``"reward_a01 missing in zh (active reward
  A01)"``.

The codes come from the core use case ``core.catalogue_names.spoken_codes`` (active rewards,
configured and delivered couriers). Code -> id: lowercased, every run of other characters than
a-z and 0-9 becomes ``_``. Pure Python: no Twisted, no database.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

REWARD_PREFIX = "reward_"
COURIER_PREFIX = "courier_"
NAME_ID_RE = re.compile(r"^(?:reward|courier)_[a-z0-9]+(?:_[a-z0-9]+)*$")
_OTHER = re.compile(r"[^a-z0-9]+")


def _slug(code: str) -> str:
    return _OTHER.sub("_", code.strip().lower()).strip("_")


def reward_prompt_id(code: str) -> str | None:
    """``reward_<code>``; None when the code has no letter or digit a-z 0-9."""
    slug = _slug(code)
    return REWARD_PREFIX + slug if slug else None


def courier_prompt_id(code: str) -> str | None:
    """``courier_<code>``; None when the code has no letter or digit a-z 0-9."""
    slug = _slug(code)
    return COURIER_PREFIX + slug if slug else None


def is_name_prompt_id(prompt_id: str) -> bool:
    return bool(NAME_ID_RE.match(prompt_id))


def catalogue_prompt_ids(reward_codes: Iterable[str], courier_codes: Iterable[str]) -> list[str]:
    """The dynamic prompt ids the IVR plays for these rewards and couriers."""
    ids = {reward_prompt_id(c) for c in reward_codes} | {courier_prompt_id(c)
                                                         for c in courier_codes}
    return sorted(i for i in ids if i is not None)


def _wanted(reward_codes: Iterable[str], courier_codes: Iterable[str]) -> dict[str, str]:
    """id -> what it names (``active reward A01``, ``courier SF``)."""
    out: dict[str, str] = {}
    for code in sorted(set(reward_codes)):
        prompt_id = reward_prompt_id(code)
        if prompt_id is not None:
            out.setdefault(prompt_id, f"active reward {code}")
    for code in sorted(set(courier_codes)):
        prompt_id = courier_prompt_id(code)
        if prompt_id is not None:
            out.setdefault(prompt_id, f"courier {code}")
    return out


def missing_name_prompts(root: str | os.PathLike, languages: Iterable[str],
                         reward_codes: Iterable[str], courier_codes: Iterable[str]) -> list[str]:
    """One line per (id, language) without a recording under ``root/<lang>/<id>.wav``."""
    root = Path(root)
    wanted = _wanted(reward_codes, courier_codes)
    lines = []
    for prompt_id, what in wanted.items():
        for lang in languages:
            if not (root / lang / f"{prompt_id}.wav").is_file():
                lines.append(f"{prompt_id} missing in {lang} ({what})")
    return lines
