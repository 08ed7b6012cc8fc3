"""Prompt set directories changed atomically: fresh directories filled aside, then a symlink
swapped onto them with one ``os.replace``; writers serialised with a file lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from prompts.audio import wav_payload

SETS_DIR = ".sets"
DIGITS = "digits"


@contextlib.contextmanager
def locked(lock_file: Path) -> Iterator[None]:
    """Serialise writers (two loads or installs at once) with an advisory file lock."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def new_stamp() -> str:
    """A unique, sortable suffix for a new set directory."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


def copy_set(src: Path, dst: Path) -> None:
    """Copy a language set (audio files and digits/) into a new directory."""
    dst.mkdir(parents=True)
    for path in sorted(src.iterdir()) if src.is_dir() else []:
        if path.name.startswith("."):
            continue
        if path.is_dir():
            if path.name == DIGITS:
                copy_set(path, dst / DIGITS)
        elif path.suffix in (".wav", ".sln"):
            shutil.copyfile(path, dst / path.name)


def swap_link(link: Path, target_name: str) -> None:
    """Point ``link`` at ``target_name`` (relative, a sibling) atomically."""
    tmp = link.with_name(f".{link.name}.swap-{secrets.token_hex(4)}")
    os.symlink(target_name, tmp)
    try:
        if link.is_dir() and not link.is_symlink():
            # A real directory (not made by us): move it aside, never delete it.
            link.rename(link.with_name(f".{link.name}.before-{new_stamp()}"))
        os.replace(tmp, link)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def prune_sets(root: Path, lang: str, keep: set[str]) -> None:
    """Delete a language's old sets, never the live one nor those in ``keep``."""
    sets = root / SETS_DIR
    link = root / lang
    live = link.resolve().name if link.is_symlink() else None
    for old in sets.glob(f"{lang}-*"):
        if old.name in keep or old.name == live:
            continue
        shutil.rmtree(old, ignore_errors=True)


def install_dir(files: list[Path], lang_dir: Path, name: str) -> int:
    """Copy ``files`` (wav; .sln written beside from the wav payload if absent) into a fresh
    ``lang_dir/.<name>-<stamp>`` and swap ``lang_dir/<name>`` to it."""
    lang_dir.mkdir(parents=True, exist_ok=True)
    fresh_name = f".{name}-{new_stamp()}"
    fresh = lang_dir / fresh_name
    link = lang_dir / name
    with locked(lang_dir / f".{name}.lock"):
        fresh.mkdir()
        os.chmod(fresh, 0o755)
        try:
            count = 0
            for wav in files:
                dest = fresh / wav.name
                shutil.copyfile(wav, dest)
                sln = wav.with_suffix(".sln")
                if sln.is_file():
                    shutil.copyfile(sln, dest.with_suffix(".sln"))
                else:
                    dest.with_suffix(".sln").write_bytes(wav_payload(wav)[0])
                for path in (dest, dest.with_suffix(".sln")):
                    os.chmod(path, 0o644)
                count += 1
            swap_link(link, fresh_name)
        except BaseException:
            shutil.rmtree(fresh, ignore_errors=True)
            raise
        for old in lang_dir.glob(f".{name}-*"):  # earlier installs, including crashed ones
            if old.name != fresh_name and old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
    return count
