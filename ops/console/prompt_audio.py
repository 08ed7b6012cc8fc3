"""The prompts page's work on files: the coverage table, playable WAVs, uploads.

Blocking (file reads, numpy): called on a worker thread, never on the reactor. An upload goes
through ``prompts.store.load``, exactly what ``loyalty prompts load`` runs: the same checks,
the same conversion to 8 kHz mono and the same atomic swap of the language's set, which the
running server's prompt watcher notices as it notices a load from the command line.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from prompts.audio import (
    AUDIO_EXTENSIONS,
    AudioError,
    convert,
    read_audio,
    rms_dbfs,
    to_mono,
    wav_bytes,
)
from prompts.catalogue_prompts import courier_prompt_id, is_name_prompt_id, reward_prompt_id
from prompts.cli import used_prompt_ids
from prompts.manifest import ID_RE, load_manifest
from prompts.store import active_root, check, current_set_version, load, load_root


@dataclass(frozen=True)
class Cell:
    state: str  # present, missing, problem
    detail: str = ""
    duration_s: float | None = None
    level_dbfs: float | None = None


@dataclass(frozen=True)
class Row:
    prompt_id: str
    used_by: str  # flows, tier
    cells: tuple[Cell, ...]  # one per language, in ``Coverage.languages`` order


@dataclass(frozen=True)
class Coverage:
    root: str
    version: str
    languages: tuple[str, ...]
    rows: tuple[Row, ...]

    def count(self, state: str) -> int:
        return sum(1 for row in self.rows for cell in row.cells if cell.state == state)


@dataclass(frozen=True)
class UploadResult:
    ok: bool
    lines: tuple[str, ...]  # what to tell ops: why it was refused, or what changed


def wanted_ids(tier_ids: list[str], reward_codes: tuple[str, ...] = (),
               courier_codes: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(prompt id, what uses it) for every prompt the server may play: the flows' ids, each
    tier's, and the names of the active rewards and the couriers (``reward_<code>``...)."""
    ids = [(i, "flows") for i in sorted(set(used_prompt_ids()))]
    seen = {i for i, _ in ids}
    ids += [(i, "tier") for i in tier_ids if i not in seen]
    seen |= set(tier_ids)
    for codes, make, what in ((reward_codes, reward_prompt_id, "reward"),
                              (courier_codes, courier_prompt_id, "courier")):
        for code in sorted(set(codes)):
            prompt_id = make(code)
            if prompt_id is not None and prompt_id not in seen:
                seen.add(prompt_id)
                ids.append((prompt_id, f"{what} {code}"))
    return ids


def coverage(setting: str, tier_ids: list[str], reward_codes: tuple[str, ...] = (),
             courier_codes: tuple[str, ...] = ()) -> Coverage:
    """Every prompt id by language: present (with duration and level), missing or a problem.
    The reward and courier names are not in the manifest: a file there is present, else
    missing (the IVR then says the name another way)."""
    manifest = load_manifest()
    root = active_root(setting)
    ids = wanted_ids(tier_ids, reward_codes, courier_codes)
    names = {i for i, _ in ids if is_name_prompt_id(i) and i not in manifest}
    problems: dict[tuple[str | None, str | None], str] = {}
    missing: set[tuple[str | None, str | None]] = set()
    for problem in check(manifest, root, [i for i, _ in ids if i not in names]):
        key = (problem.lang, problem.prompt_id)
        if problem.kind == "missing-audio":
            missing.add(key)
        problems.setdefault(key, problem.message)
    rows = []
    for prompt_id, used_by in ids:
        cells = []
        for lang in manifest.languages:
            unknown = problems.get((None, prompt_id))
            if unknown:
                cells.append(Cell("problem", unknown))
            elif (lang, prompt_id) in missing or (lang, None) in missing:
                cells.append(Cell("missing", problems.get((lang, prompt_id), "no audio")))
            elif (lang, prompt_id) in problems:
                cells.append(Cell("problem", problems[(lang, prompt_id)]))
            elif prompt_id in names and not (root / lang / f"{prompt_id}.wav").is_file():
                cells.append(Cell("missing", f"{lang}/{prompt_id}: no recording of the name"))
            else:
                cells.append(_measure(root / lang / f"{prompt_id}.wav"))
        rows.append(Row(prompt_id, used_by, tuple(cells)))
    return Coverage(str(root), current_set_version(root), tuple(manifest.languages), tuple(rows))


def _measure(wav: Path) -> Cell:
    try:
        audio = read_audio(wav)
    except AudioError as exc:
        return Cell("problem", str(exc))
    return Cell("present", "", audio.duration, rms_dbfs(to_mono(audio)))


def _checked(setting: str, lang: str, prompt_id: str) -> tuple[Path, list[str]]:
    manifest = load_manifest()
    if lang not in manifest.languages or not ID_RE.match(prompt_id):
        raise KeyError(prompt_id)
    return active_root(setting) / lang, list(manifest.languages)


def playable_wav(path: str | Path) -> bytes:
    """Any stored recording (.wav, .sln...) as an 8 kHz mono 16-bit WAV a browser plays."""
    return wav_bytes(convert(read_audio(path)))


def prompt_wav(setting: str, lang: str, prompt_id: str) -> bytes | None:
    """The active set's audio of one prompt as a WAV; None when it has none."""
    lang_dir, _ = _checked(setting, lang, prompt_id)
    for ext in (".wav", ".sln"):
        path = lang_dir / f"{prompt_id}{ext}"
        if path.is_file():
            return playable_wav(path)
    return None


def upload_prompt(setting: str, lang: str, prompt_id: str, filename: str,
                  data: bytes) -> UploadResult:
    """Load one uploaded recording as ``loyalty prompts load`` would load a directory of it."""
    manifest = load_manifest()
    if lang not in manifest.languages:
        return UploadResult(False, (f"'{lang}' is not a language of the prompt manifest",))
    if prompt_id not in manifest and not is_name_prompt_id(prompt_id):
        return UploadResult(False, (f"'{prompt_id}' is not a prompt id of the manifest, nor "
                                    "a reward's or courier's name (reward_<code>...)",))
    ext = Path(filename).suffix.lower()
    if ext not in AUDIO_EXTENSIONS:
        return UploadResult(False, (
            f"{filename or 'the file'}: '{ext or 'no extension'}' is not an audio file type "
            f"we know (WAV, .sln, .ulaw... or {', '.join(e for e in AUDIO_EXTENSIONS[8:11])} "
            "with sox)",))
    if not data:
        return UploadResult(False, (f"{filename}: the file is empty",))
    with tempfile.TemporaryDirectory(prefix="loyalty-upload-") as tmp:
        (Path(tmp) / f"{prompt_id}{ext}").write_bytes(data)
        report = load(tmp, lang, load_root(setting), manifest)
    if not report.ok:
        reasons = [str(p).replace(f"{prompt_id}{ext}:", f"{filename}:", 1)
                   for p in report.errors]
        return UploadResult(False, tuple(reasons) + (f"the {lang} prompts were not changed",))
    return UploadResult(True, (f"{lang}/{prompt_id} replaced from {filename} (set version "
                               f"{report.version}); the server uses it from now on",))
