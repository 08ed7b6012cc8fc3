"""Prompt sets on disk: check them and load new recordings (installing: ``prompts.install``).

Pure Python + numpy; nothing here imports Twisted, and nothing here runs on the reactor thread
(loading converts audio: run it from the command line or a worker thread).

A *prompt root* holds one directory per language::

    <root>/<lang>/<id>.wav      8 kHz mono 16-bit PCM WAV
    <root>/<lang>/<id>.sln      the same samples without a header (Asterisk's "slin")
    <root>/zh/digits/<name>.*   Mandarin numbers and dates for SAY NUMBER / SAY DATETIME

Which root is active (``active_root``): the ``[prompts] dir`` setting when it is set; else
``var/prompts`` (relative to the working directory, like the SQLite file) once ops have loaded
anything there; else the committed default set ``prompts/audio``.

Loading (``load``) never edits a live set in place. In an ops root each ``<lang>`` is a symlink
to a complete set under ``<root>/.sets/``; a load validates and converts every supplied file
first, builds a new complete set (the current set with the supplied files replaced, so ids not
supplied keep their audio), then swaps the symlink with one ``os.replace``. A bad file means no
swap at all: the old set stays byte-identical. The first load into an empty root copies the
committed default set in for every language, so the root is complete from then on. The set
before the newest is kept under ``.sets/`` for a manual rollback.

Installing (``prompts.install``) copies a root into Asterisk's sounds directory the same way:
``<SOUNDS_DIR>/<lang>/loyalty`` and ``<SOUNDS_DIR>/zh/digits`` become symlinks to fresh
directories, swapped atomically per language.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from prompts import DEFAULT_AUDIO_ROOT
from prompts.audio import AUDIO_EXTENSIONS, TARGET_RATE, AudioError, wav_bytes, wav_payload
from prompts.catalogue_prompts import is_name_prompt_id
from prompts.manifest import Manifest
from prompts.recording import refusal_kind, validate_recording
from prompts.say import ZH_DIGITS
from prompts.set_dirs import DIGITS, SETS_DIR, copy_set, locked, new_stamp, prune_sets, swap_link

OPS_ROOT = Path("var/prompts")
ROOT_MARKER = ".prompt-root"
SET_INFO = ".set.json"

ProgressFn = Callable[[int, int, str, str], None]  # (index, total, file name, outcome)


class PromptError(RuntimeError):
    """An operation refused as a whole; ``problems`` says why, one entry per issue."""

    def __init__(self, message: str, problems: Iterable[Problem] = ()):
        self.problems = list(problems)
        super().__init__(message)


@dataclass(frozen=True)
class Problem:
    """One issue, in plain words (``str(problem)``), with what it is about."""

    kind: str  # unknown-id missing-audio unreadable bad-format mismatch extra duplicate
    # too-short too-long silent clipped unknown-language
    message: str
    lang: str | None = None
    prompt_id: str | None = None
    path: str | None = None

    def __str__(self) -> str:
        return self.message


@dataclass
class LoadReport:
    lang: str
    root: Path
    loaded: list[str] = field(default_factory=list)   # ids (and digits/<name>) replaced
    kept: list[str] = field(default_factory=list)     # manifest ids not supplied: audio kept
    missing: list[str] = field(default_factory=list)  # manifest ids with no audio afterwards
    extra: list[str] = field(default_factory=list)    # supplied names matching no id
    ignored: list[str] = field(default_factory=list)  # non-audio / hidden files skipped
    errors: list[Problem] = field(default_factory=list)
    swapped: bool = False
    version: str | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class InstallReport:
    sounds_dir: Path
    installed: dict[str, int] = field(default_factory=dict)  # "<lang>/<subdir>" -> files


# --------------------------------------------------------------------------- roots


def active_root(config_dir_setting: str = "", *, cwd: str | os.PathLike | None = None) -> Path:
    """The prompt root the server and the tools use (see the module docstring)."""
    base = Path(cwd) if cwd is not None else Path.cwd()
    if config_dir_setting and config_dir_setting.strip():
        return (base / Path(config_dir_setting.strip()).expanduser()).absolute()
    ops = base / OPS_ROOT
    if (ops / ROOT_MARKER).is_file():
        return ops.absolute()
    return DEFAULT_AUDIO_ROOT


def load_root(config_dir_setting: str = "", *, cwd: str | os.PathLike | None = None) -> Path:
    """Where ``prompts load`` puts new sets: the configured dir, else ``var/prompts``."""
    base = Path(cwd) if cwd is not None else Path.cwd()
    if config_dir_setting and config_dir_setting.strip():
        return (base / Path(config_dir_setting.strip()).expanduser()).absolute()
    return (base / OPS_ROOT).absolute()


def current_set_version(root: str | os.PathLike) -> str:
    """A short token that changes whenever any language's set under ``root`` changes.

    Cheap enough to poll every few seconds: it follows the language symlinks and stats the
    files (no audio is read).
    """
    root = Path(root)
    digest = hashlib.sha256()
    try:
        entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    except FileNotFoundError:
        return "absent"
    for lang_dir in entries:
        if not lang_dir.is_dir():
            continue
        digest.update(f"{lang_dir.name}\0{os.path.realpath(lang_dir)}\0".encode())
        for dirpath, dirnames, filenames in os.walk(lang_dir, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                st = os.stat(os.path.join(dirpath, name))
                rel = os.path.relpath(os.path.join(dirpath, name), lang_dir)
                digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:16]


def digits_names(lang: str) -> tuple[str, ...]:
    """The ``digits/`` files a language's set must carry (only Mandarin needs a pack)."""
    return tuple(ZH_DIGITS) if lang.lower().startswith("zh") else ()


# --------------------------------------------------------------------------- check


def check(manifest: Manifest, audio_dir: str | os.PathLike,
          used_ids: Iterable[str]) -> list[Problem]:
    """Problems with a prompt root: unknown ids the IVR uses, missing or unreadable audio."""
    audio_dir = Path(audio_dir)
    problems: list[Problem] = []
    for prompt_id in sorted(set(used_ids)):
        if prompt_id not in manifest:
            problems.append(Problem(
                "unknown-id", f"the IVR uses prompt '{prompt_id}', which the manifest does not "
                "define", prompt_id=prompt_id))
    for lang in manifest.languages:
        lang_dir = audio_dir / lang
        if not lang_dir.is_dir():
            problems.append(Problem("missing-audio", f"{lang}: no audio directory {lang_dir}",
                                    lang=lang, path=str(lang_dir)))
            continue
        names = [(prompt_id, lang_dir / prompt_id) for prompt_id in manifest.ids]
        names += [(f"{DIGITS}/{n}", lang_dir / DIGITS / n) for n in digits_names(lang)]
        for name, stem in names:
            problems += _check_file(lang, name, stem)
    return problems


def _check_file(lang: str, name: str, stem: Path) -> list[Problem]:
    wav = stem.with_name(stem.name + ".wav")
    sln = stem.with_name(stem.name + ".sln")
    label = f"{lang}/{name}"
    if not wav.is_file():
        return [Problem("missing-audio", f"{label}: no audio ({wav} is missing)",
                        lang=lang, prompt_id=name, path=str(wav))]
    try:
        frames, rate, channels, width = wav_payload(wav)
    except AudioError as exc:
        return [Problem("unreadable", f"{label}: {wav.name} is unreadable: {exc}",
                        lang=lang, prompt_id=name, path=str(wav))]
    if (rate, channels, width) != (TARGET_RATE, 1, 2):
        return [Problem("bad-format",
                        f"{label}: {wav.name} is {rate} Hz, {channels} channel(s), "
                        f"{8 * width}-bit; Asterisk needs 8000 Hz mono 16-bit "
                        "(load it with 'loyalty prompts load' to convert)",
                        lang=lang, prompt_id=name, path=str(wav))]
    if not frames:
        return [Problem("unreadable", f"{label}: {wav.name} has no sound in it",
                        lang=lang, prompt_id=name, path=str(wav))]
    if sln.exists() and sln.read_bytes() != frames:
        return [Problem("mismatch", f"{label}: {sln.name} does not hold the same sound as "
                        f"{wav.name}", lang=lang, prompt_id=name, path=str(sln))]
    return []


# --------------------------------------------------------------------------- load


def _suggest(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _scan(source: Path, lang: str, manifest: Manifest,
          report: LoadReport) -> dict[str, Path]:
    """Map each supplied prompt name to its file; record extras, duplicates, ignored files."""
    wanted = {prompt_id: prompt_id for prompt_id in manifest.ids}
    digits = set(digits_names(lang))
    found: dict[str, list[Path]] = {}

    def consider(path: Path, prefix: str) -> None:
        if path.name.startswith("."):
            return
        if path.suffix.lower() not in AUDIO_EXTENSIONS:
            report.ignored.append(str(path.relative_to(source)))
            return
        stem = path.stem.lower()
        if prefix:
            if stem in digits:
                found.setdefault(f"{DIGITS}/{stem}", []).append(path)
            else:
                report.extra.append(f"{DIGITS}/{path.stem}")
                report.errors.append(Problem(
                    "extra", f"{DIGITS}/{path.name}: not a file of the Mandarin digits pack"
                    + _suggest(stem, digits), lang=lang, path=str(path)))
            return
        if stem in wanted:
            found.setdefault(wanted[stem], []).append(path)
        elif is_name_prompt_id(stem):
            # A reward's or courier's name (reward_<code>, courier_<code>): not in the
            # manifest, since the catalogue and the couriers change without a release.
            found.setdefault(stem, []).append(path)
        else:
            report.extra.append(path.stem)
            report.errors.append(Problem(
                "extra", f"{path.name}: the name matches no prompt id in the manifest"
                + _suggest(stem, wanted), lang=lang, path=str(path)))

    for path in sorted(source.iterdir()):
        if path.is_dir():
            if path.name == DIGITS and digits:
                for sub in sorted(path.iterdir()):
                    if sub.is_file():
                        consider(sub, DIGITS)
            elif not path.name.startswith("."):
                report.ignored.append(path.name + "/")
        elif path.is_file():
            consider(path, "")
    out: dict[str, Path] = {}
    for name, paths in found.items():
        if len(paths) > 1:
            report.errors.append(Problem(
                "duplicate", f"{', '.join(p.name for p in paths)}: more than one file for "
                f"prompt '{name}'; keep only one", lang=lang, prompt_id=name,
                path=str(paths[0])))
        else:
            out[name] = paths[0]
    return out


def _seed_root(root: Path, manifest: Manifest, base_root: Path) -> None:
    """Make ``root`` a complete ops root from ``base_root`` (first load only)."""
    root.mkdir(parents=True, exist_ok=True)
    sets = root / SETS_DIR
    sets.mkdir(exist_ok=True)
    for lang in manifest.languages:
        if (root / lang).exists():
            continue
        name = f"{lang}-{new_stamp()}"
        copy_set(base_root / lang, sets / name)
        swap_link(root / lang, f"{SETS_DIR}/{name}")
    (root / ROOT_MARKER).write_text(
        json.dumps({"seeded_from": str(base_root), "at": datetime.now(UTC).isoformat()}) + "\n",
        encoding="utf-8")


def load(source_dir: str | os.PathLike, lang: str, target_root: str | os.PathLike,
         manifest: Manifest, *, base_root: str | os.PathLike | None = None,
         allow_extra: bool = False, dry_run: bool = False,
         progress: ProgressFn | None = None) -> LoadReport:
    """Validate, convert and atomically install recordings for one language.

    ``source_dir`` holds ``<id>.<ext>`` files (any sample rate and channel count; WAV and raw
    Asterisk formats natively, others through sox), plus ``digits/<name>.<ext>`` for zh. The new
    set is the current one with the supplied files replaced. Nothing changes unless every
    supplied file passes; then ``report.swapped`` is True. Names that match no id are errors
    unless ``allow_extra`` (then they are only listed in ``report.extra``).
    """
    source = Path(source_dir)
    root = Path(target_root)
    base = Path(base_root) if base_root is not None else DEFAULT_AUDIO_ROOT
    report = LoadReport(lang=lang, root=root)
    if lang not in manifest.languages:
        report.errors.append(Problem(
            "unknown-language", f"'{lang}' is not a language of the prompt manifest "
            f"({', '.join(manifest.languages)})", lang=lang))
        return report
    if not source.is_dir():
        report.errors.append(Problem("unreadable", f"{source}: not a directory", lang=lang))
        return report

    supplied = _scan(source, lang, manifest, report)
    if allow_extra:
        report.errors = [p for p in report.errors if p.kind != "extra"]
    if not supplied and not report.errors:
        report.errors.append(Problem("missing-audio", f"{source}: no audio files for any "
                                     "prompt id", lang=lang))

    root.mkdir(parents=True, exist_ok=True)
    sets = root / SETS_DIR
    sets.mkdir(exist_ok=True)
    staging = sets / f".staging-{lang}-{new_stamp()}"
    staging.mkdir()
    try:
        converted: dict[str, Path] = {}
        for n, (name, path) in enumerate(sorted(supplied.items()), 1):
            pcm, reasons = validate_recording(path)
            for reason in reasons:
                report.errors.append(Problem(refusal_kind(reason), f"{path.name}: {reason}",
                                             lang=lang, prompt_id=name, path=str(path)))
            if pcm is not None:
                out = staging / f"{name}.wav"
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(wav_bytes(pcm))
                out.with_suffix(".sln").write_bytes(pcm.astype("<i2").tobytes())
                converted[name] = out
            if progress is not None:
                progress(n, len(supplied), str(path.relative_to(source)),
                         "ok" if not reasons else "; ".join(reasons))
        report.loaded = sorted(converted)
        if report.errors or dry_run:
            report.kept = [i for i in manifest.ids if i not in supplied]
            return report

        with locked(root / ".lock"):
            if not (root / ROOT_MARKER).is_file():
                _seed_root(root, manifest, base)
            link = root / lang
            current = link.resolve() if link.exists() else base / lang
            previous_name = link.resolve().name if link.is_symlink() else None
            new_name = f"{lang}-{new_stamp()}"
            new_dir = sets / new_name
            copy_set(current, new_dir)
            for name, staged in converted.items():
                dest = new_dir / f"{name}.wav"
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(staged, dest)
                shutil.copyfile(staged.with_suffix(".sln"), dest.with_suffix(".sln"))
            (new_dir / SET_INFO).write_text(json.dumps({
                "lang": lang, "loaded_at": datetime.now(UTC).isoformat(),
                "source": str(source.absolute()), "manifest_version": manifest.version,
                "replaced": report.loaded,
            }, indent=1) + "\n", encoding="utf-8")
            swap_link(link, f"{SETS_DIR}/{new_name}")
            report.swapped = True
            prune_sets(root, lang, {new_name} | ({previous_name} if previous_name else set()))
        report.kept = [i for i in manifest.ids if i not in supplied]
        report.missing = [i for i in manifest.ids if not (new_dir / f"{i}.wav").is_file()]
        report.missing += [f"{DIGITS}/{d}" for d in digits_names(lang)
                           if not (new_dir / DIGITS / f"{d}.wav").is_file()]
        report.version = current_set_version(root)
        return report
    finally:
        shutil.rmtree(staging, ignore_errors=True)
