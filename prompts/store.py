"""Prompt sets on disk: check them, load new recordings, install them for Asterisk.

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

Installing (``install``) copies a root into Asterisk's sounds directory the same way:
``<SOUNDS_DIR>/<lang>/loyalty`` and ``<SOUNDS_DIR>/zh/digits`` become symlinks to fresh
directories, swapped atomically per language.
"""

from __future__ import annotations

import contextlib
import difflib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from prompts import DEFAULT_AUDIO_ROOT
from prompts.audio import (
    AUDIO_EXTENSIONS,
    TARGET_RATE,
    AudioError,
    clipped_fraction,
    convert,
    read_audio,
    rms_dbfs,
    to_mono,
    wav_bytes,
    wav_payload,
)
from prompts.manifest import Manifest
from prompts.say import ZH_DIGITS

# Validation limits for loaded recordings.
MIN_DURATION_S = 0.2
MAX_DURATION_S = 60.0
SILENCE_DBFS = -50.0        # a whole file quieter than this (RMS) counts as silent
MAX_CLIPPED_FRACTION = 0.001  # more than 0.1% of samples flat at full scale counts as clipped

OPS_ROOT = Path("var/prompts")
ROOT_MARKER = ".prompt-root"
SETS_DIR = ".sets"
SET_INFO = ".set.json"
DIGITS = "digits"

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


def validate_recording(path: Path) -> tuple[np.ndarray | None, list[str]]:
    """Decode, check and convert one file: (8 kHz int16 samples or None, reasons refused)."""
    try:
        audio = read_audio(path)
    except AudioError as exc:
        return None, [f"cannot be read: {exc}"]
    reasons: list[str] = []
    if audio.frames == 0:
        return None, ["has no sound in it (0 samples)"]
    if audio.duration < MIN_DURATION_S:
        reasons.append(f"is too short ({audio.duration:.2f} s; at least {MIN_DURATION_S} s)")
    if audio.duration > MAX_DURATION_S:
        reasons.append(f"is too long ({audio.duration:.1f} s; at most {MAX_DURATION_S:.0f} s)")
    level = rms_dbfs(to_mono(audio))
    if level < SILENCE_DBFS:
        shown = "no signal at all" if level == float("-inf") else f"{level:.0f} dBFS"
        reasons.append(f"is silent or nearly silent (level {shown}; needs at least "
                       f"{SILENCE_DBFS:.0f} dBFS)")
    clipped = clipped_fraction(audio)
    if clipped > MAX_CLIPPED_FRACTION:
        reasons.append(f"is clipped ({clipped:.1%} of the samples are flat at full scale; "
                       "record it again at a lower level)")
    if reasons:
        return None, reasons
    return convert(audio), []


def _kind_of(reason: str) -> str:
    for key, kind in (("too short", "too-short"), ("too long", "too-long"),
                      ("silent", "silent"), ("clipped", "clipped")):
        if key in reason:
            return kind
    return "unreadable"


@contextlib.contextmanager
def _locked(lock_file: Path):
    """Serialise writers (two loads or installs at once) with an advisory file lock."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


def _copy_set(src: Path, dst: Path) -> None:
    """Copy a language set (audio files and digits/) into a new directory."""
    dst.mkdir(parents=True)
    for path in sorted(src.iterdir()) if src.is_dir() else []:
        if path.name.startswith("."):
            continue
        if path.is_dir():
            if path.name == DIGITS:
                _copy_set(path, dst / DIGITS)
        elif path.suffix in (".wav", ".sln"):
            shutil.copyfile(path, dst / path.name)


def _swap_link(link: Path, target_name: str) -> None:
    """Point ``link`` at ``target_name`` (relative, a sibling) atomically."""
    tmp = link.with_name(f".{link.name}.swap-{secrets.token_hex(4)}")
    os.symlink(target_name, tmp)
    try:
        if link.is_dir() and not link.is_symlink():
            # A real directory (not made by us): move it aside, never delete it.
            link.rename(link.with_name(f".{link.name}.before-{_stamp()}"))
        os.replace(tmp, link)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _seed_root(root: Path, manifest: Manifest, base_root: Path) -> None:
    """Make ``root`` a complete ops root from ``base_root`` (first load only)."""
    root.mkdir(parents=True, exist_ok=True)
    sets = root / SETS_DIR
    sets.mkdir(exist_ok=True)
    for lang in manifest.languages:
        if (root / lang).exists():
            continue
        name = f"{lang}-{_stamp()}"
        _copy_set(base_root / lang, sets / name)
        _swap_link(root / lang, f"{SETS_DIR}/{name}")
    (root / ROOT_MARKER).write_text(
        json.dumps({"seeded_from": str(base_root), "at": datetime.now(UTC).isoformat()}) + "\n",
        encoding="utf-8")


def _prune(root: Path, lang: str, keep: set[str]) -> None:
    """Delete a language's old sets, never the live one nor those in ``keep``."""
    sets = root / SETS_DIR
    link = root / lang
    live = link.resolve().name if link.is_symlink() else None
    for old in sets.glob(f"{lang}-*"):
        if old.name in keep or old.name == live:
            continue
        shutil.rmtree(old, ignore_errors=True)


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
    staging = sets / f".staging-{lang}-{_stamp()}"
    staging.mkdir()
    try:
        converted: dict[str, Path] = {}
        for n, (name, path) in enumerate(sorted(supplied.items()), 1):
            pcm, reasons = validate_recording(path)
            for reason in reasons:
                report.errors.append(Problem(_kind_of(reason), f"{path.name}: {reason}",
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

        with _locked(root / ".lock"):
            if not (root / ROOT_MARKER).is_file():
                _seed_root(root, manifest, base)
            link = root / lang
            current = link.resolve() if link.exists() else base / lang
            previous_name = link.resolve().name if link.is_symlink() else None
            new_name = f"{lang}-{_stamp()}"
            new_dir = sets / new_name
            _copy_set(current, new_dir)
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
            _swap_link(link, f"{SETS_DIR}/{new_name}")
            report.swapped = True
            _prune(root, lang, {new_name} | ({previous_name} if previous_name else set()))
        report.kept = [i for i in manifest.ids if i not in supplied]
        report.missing = [i for i in manifest.ids if not (new_dir / f"{i}.wav").is_file()]
        report.missing += [f"{DIGITS}/{d}" for d in digits_names(lang)
                           if not (new_dir / DIGITS / f"{d}.wav").is_file()]
        report.version = current_set_version(root)
        return report
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --------------------------------------------------------------------------- install


def _install_dir(files: list[Path], lang_dir: Path, name: str) -> int:
    """Copy ``files`` (wav; .sln written beside from the wav payload if absent) into a fresh
    ``lang_dir/.<name>-<stamp>`` and swap ``lang_dir/<name>`` to it."""
    lang_dir.mkdir(parents=True, exist_ok=True)
    fresh_name = f".{name}-{_stamp()}"
    fresh = lang_dir / fresh_name
    link = lang_dir / name
    with _locked(lang_dir / f".{name}.lock"):
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
            _swap_link(link, fresh_name)
        except BaseException:
            shutil.rmtree(fresh, ignore_errors=True)
            raise
        for old in lang_dir.glob(f".{name}-*"):  # earlier installs, including crashed ones
            if old.name != fresh_name and old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
    return count


def install(prompt_root: str | os.PathLike, sounds_dir: str | os.PathLike, *,
            manifest: Manifest | None = None, subdir: str = "loyalty",
            force: bool = False) -> InstallReport:
    """Lay a prompt root out for Asterisk: ``<sounds>/<lang>/<subdir>/<id>.wav|.sln`` and
    ``<sounds>/zh/digits/<name>.wav|.sln``; each directory swapped atomically.

    With a ``manifest``, the root is checked first and an incomplete root is refused (unless
    ``force``), and only the manifest's ids are copied.
    """
    root = Path(prompt_root)
    sounds = Path(sounds_dir)
    if manifest is not None:
        problems = check(manifest, root, ())
        if problems and not force:
            raise PromptError(f"{root} is not a complete prompt set; nothing installed",
                              problems)
        languages = list(manifest.languages)
    else:
        languages = sorted(p.name for p in root.iterdir()
                           if p.is_dir() and not p.name.startswith("."))
    if not languages:
        raise PromptError(f"{root} has no language directories; nothing installed")
    report = InstallReport(sounds_dir=sounds)
    for lang in languages:
        lang_src = root / lang
        if not lang_src.is_dir():
            continue
        if manifest is not None:
            files = [lang_src / f"{i}.wav" for i in manifest.ids]
            files = [f for f in files if f.is_file()]
        else:
            files = sorted(lang_src.glob("*.wav"))
        report.installed[f"{lang}/{subdir}"] = _install_dir(files, sounds / lang, subdir)
        digits_src = lang_src / DIGITS
        if digits_src.is_dir():
            wanted = digits_names(lang) or tuple(p.stem for p in digits_src.glob("*.wav"))
            dfiles = [digits_src / f"{d}.wav" for d in wanted]
            dfiles = [f for f in dfiles if f.is_file()]
            report.installed[f"{lang}/{DIGITS}"] = _install_dir(dfiles, sounds / lang, DIGITS)
    return report
