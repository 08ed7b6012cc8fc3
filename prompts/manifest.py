"""The prompt manifest: ids, languages and words (``prompts/manifest.toml``).

Pure Python; no Twisted. ``load_manifest()`` validates the whole file and raises one
``ManifestError`` listing every problem (an id missing a language, a badly formed id...).
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ID_RE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
LANG_RE = re.compile(r"^[a-z]{2,3}(?:_[A-Za-z0-9]+)*$")
# "[en: For English, press 9.]": a stretch spoken in another language's voice.
SEGMENT_RE = re.compile(r"\[([a-z]{2,3}(?:_[A-Za-z0-9]+)*):\s*([^\]]*)\]")
_PROMPT_KEYS_OPTIONAL = {"note"}


class ManifestError(ValueError):
    """The manifest file is unreadable or inconsistent; ``problems`` lists each issue."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.path = str(path)
        self.problems = list(problems)
        super().__init__(f"{self.path}: " + "; ".join(self.problems))


@dataclass(frozen=True)
class Manifest:
    path: Path
    version: str
    languages: tuple[str, ...]
    ids: tuple[str, ...]
    _texts: dict[str, dict[str, str]] = field(repr=False)
    notes: dict[str, str] = field(default_factory=dict, repr=False)
    tts: dict[str, dict[str, object]] = field(default_factory=dict, repr=False)

    def __contains__(self, prompt_id: object) -> bool:
        return prompt_id in self._texts

    def __len__(self) -> int:
        return len(self.ids)

    def raw_text(self, prompt_id: str, lang: str) -> str | None:
        """The text as written, with any ``[xx: ...]`` voice markup."""
        return self._texts.get(prompt_id, {}).get(lang)

    def text(self, prompt_id: str, lang: str) -> str | None:
        """The words a caller hears (markup removed); None for an unknown id or language."""
        raw = self.raw_text(prompt_id, lang)
        if raw is None:
            return None
        return SEGMENT_RE.sub(lambda m: m.group(2).strip(), raw).strip()

    def segments(self, prompt_id: str, lang: str) -> list[tuple[str, str]]:
        """[(language whose voice speaks it, words), ...] in order, for speech synthesis."""
        raw = self.raw_text(prompt_id, lang)
        if raw is None:
            raise KeyError(f"no prompt {prompt_id!r} in language {lang!r}")
        out: list[tuple[str, str]] = []
        pos = 0
        for match in SEGMENT_RE.finditer(raw):
            before = raw[pos:match.start()].strip()
            if before:
                out.append((lang, before))
            if match.group(2).strip():
                out.append((match.group(1), match.group(2).strip()))
            pos = match.end()
        rest = raw[pos:].strip()
        if rest:
            out.append((lang, rest))
        return out


def default_manifest_path() -> Path:
    return Path(__file__).resolve().parent / "manifest.toml"


def load_manifest(path: str | os.PathLike | None = None) -> Manifest:
    """Read and validate the manifest (default: the one beside this module)."""
    path = Path(path) if path is not None else default_manifest_path()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(path, ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(path, [f"cannot read: {exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(path, [f"not valid TOML: {exc}"]) from None
    return _build(path, raw)


def _build(path: Path, raw: dict) -> Manifest:
    problems: list[str] = []
    for key in raw:
        if key not in ("version", "languages", "tts", "prompts"):
            problems.append(f"unknown top-level key {key!r}")

    version = raw.get("version")
    if not isinstance(version, str | int | float) or isinstance(version, bool) or not str(
            version).strip():
        problems.append("'version' is missing (put version = \"...\" at the top)")
        version = ""

    languages = raw.get("languages")
    if (not isinstance(languages, list) or not languages
            or not all(isinstance(lang, str) and LANG_RE.match(lang) for lang in languages)):
        problems.append("'languages' must be a list of language codes, e.g. [\"zh\", \"en\"]")
        languages = []
    elif len(set(languages)) != len(languages):
        problems.append("'languages' lists a language twice")

    tts = raw.get("tts", {})
    if not isinstance(tts, dict) or not all(isinstance(v, dict) for v in tts.values()):
        problems.append("'tts' must be tables like [tts.zh] voice = \"cmn\"")
        tts = {}

    prompts = raw.get("prompts")
    texts: dict[str, dict[str, str]] = {}
    notes: dict[str, str] = {}
    if not isinstance(prompts, dict) or not prompts:
        problems.append("no [prompts.<id>] tables")
        prompts = {}
    for prompt_id, entry in prompts.items():
        if not ID_RE.match(prompt_id):
            problems.append(f"{prompt_id!r}: ids are lowercase snake_case (a-z, 0-9, _)")
        if not isinstance(entry, dict):
            problems.append(f"{prompt_id}: expected a table with one text per language")
            continue
        texts[prompt_id] = {}
        for key, value in entry.items():
            if key in _PROMPT_KEYS_OPTIONAL:
                if isinstance(value, str):
                    notes[prompt_id] = value
                else:
                    problems.append(f"{prompt_id}.{key}: expected text")
            elif key not in languages:
                problems.append(f"{prompt_id}.{key}: not a language of this manifest "
                                f"({', '.join(languages)})")
            elif not isinstance(value, str) or not value.strip():
                problems.append(f"{prompt_id}.{key}: empty text")
            else:
                texts[prompt_id][key] = value
                for match in SEGMENT_RE.finditer(value):
                    if match.group(1) not in languages:
                        problems.append(f"{prompt_id}.{key}: [{match.group(1)}: ...] names "
                                        "a language the manifest does not have")
        for lang in languages:
            if lang not in entry:
                problems.append(f"{prompt_id}: no {lang} text")

    if problems:
        raise ManifestError(path, problems)
    return Manifest(
        path=path,
        version=str(version),
        languages=tuple(languages),
        ids=tuple(texts),
        _texts=texts,
        notes=notes,
        tts={k: dict(v) for k, v in tts.items()},
    )
