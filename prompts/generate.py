"""Make the default prompt audio from the manifest with espeak-ng (a developer tool).

    python -m prompts.generate [--lang zh] [--only ID ...] [--force] [--out DIR]

Needs Debian's ``espeak-ng`` (voices ``cmn-latn-pinyin`` for zh, ``en-us`` for en; see ``[tts]``
in the manifest). Debian's Mandarin dictionary spells most characters as pinyin, and the plain
``cmn`` voice reads pinyin as English words; ``cmn-latn-pinyin`` reads it as Mandarin.
The conversion to 8 kHz mono 16-bit is done here in numpy, not by sox. Output:
``prompts/audio/<lang>/<id>.wav`` and ``.sln``, and ``prompts/audio/zh/digits/<name>.*`` for
Asterisk's Mandarin numbers and dates, and the names ``reward_<code>`` of the demo rewards
(``core.demo``) and ``courier_<code>`` of the configured couriers (``[couriers]``; skip them
with ``--no-names``). ``prompts/audio/generated.json`` records what each file
was made from, so a rerun only remakes prompts whose text or voice changed.

Nothing at run time or in the tests needs espeak-ng: the output is committed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from prompts import DEFAULT_AUDIO_ROOT
from prompts.audio import TARGET_RATE, parse_wav, resample, to_int16, to_mono, write_prompt
from prompts.catalogue_prompts import courier_prompt_id, reward_prompt_id
from prompts.manifest import Manifest, load_manifest
from prompts.say import ZH_DIGITS

DEFAULT_VOICES = {
    "zh": {"voice": "cmn-latn-pinyin", "speed": 240},
    "en": {"voice": "en-us", "speed": 180},
}
GAP_S = 0.12          # between segments spoken in different voices
LEAD_S = 0.04         # silence kept before speech
TAIL_S = 0.08         # and after it
MIN_S = 0.30          # pad very short words (single digits) to at least this
MAX_PAUSE_S = 0.22    # espeak's pauses at punctuation are long: cap them (keeps files small)
TARGET_RMS_DBFS = -20.0
PEAK_LIMIT = 10 ** (-1.0 / 20)  # -1 dBFS
RECIPE_VERSION = 3    # bump when the processing below changes, to remake everything


def espeak(text: str, voice: str, speed: int) -> tuple[np.ndarray, int]:
    """Speak ``text`` and return (mono float samples, rate)."""
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as tmp:
        text_file = Path(tmp) / "text.txt"
        wav_file = Path(tmp) / "out.wav"
        text_file.write_text(text, encoding="utf-8")
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed), "-b", "1", "-f", str(text_file),
             "-w", str(wav_file)],
            check=True, capture_output=True,
        )
        audio = parse_wav(wav_file.read_bytes())
    return to_mono(audio), audio.rate


def _trim(x: np.ndarray, rate: int, threshold_db: float = -45.0) -> np.ndarray:
    if x.size == 0:
        return x
    frame = max(1, rate // 100)  # 10 ms
    n = x.size // frame
    if n == 0:
        return x
    energy = np.sqrt(np.mean(np.square(x[: n * frame].reshape(n, frame)), axis=1))
    loud = np.flatnonzero(energy > 10 ** (threshold_db / 20))
    if loud.size == 0:
        return x
    start = max(0, loud[0] * frame - int(LEAD_S * rate))
    end = min(x.size, (loud[-1] + 1) * frame + int(TAIL_S * rate))
    return x[start:end]


def _cap_pauses(x: np.ndarray, rate: int, threshold_db: float = -45.0) -> np.ndarray:
    frame = max(1, rate // 100)
    n = x.size // frame
    if n == 0:
        return x
    energy = np.sqrt(np.mean(np.square(x[: n * frame].reshape(n, frame)), axis=1))
    quiet = energy <= 10 ** (threshold_db / 20)
    keep_frames = int(MAX_PAUSE_S * rate) // frame
    keep = np.ones(x.size, dtype=bool)
    run_start = None
    for i, q in enumerate(np.append(quiet, False)):
        if q and run_start is None:
            run_start = i
        elif not q and run_start is not None:
            if i - run_start > keep_frames:
                half = keep_frames // 2
                keep[(run_start + half) * frame:(i - (keep_frames - half)) * frame] = False
            run_start = None
    return x[keep]


def render(segments: list[tuple[str, str]], voices: dict[str, dict]) -> np.ndarray:
    """Speak each (language, words) segment, join them, return 8 kHz int16 samples."""
    parts: list[np.ndarray] = []
    for lang, words in segments:
        cfg = voices.get(lang) or DEFAULT_VOICES[lang]
        x, rate = espeak(words, str(cfg["voice"]), int(cfg.get("speed", 170)))
        y = _cap_pauses(_trim(resample(x, rate, TARGET_RATE), TARGET_RATE), TARGET_RATE)
        if parts:
            parts.append(np.zeros(int(GAP_S * TARGET_RATE)))
        parts.append(y)
    y = np.concatenate(parts) if parts else np.zeros(0)
    if y.size < MIN_S * TARGET_RATE:
        pad = int(MIN_S * TARGET_RATE) - y.size
        y = np.concatenate((np.zeros(pad // 3), y, np.zeros(pad - pad // 3)))
    rms = float(np.sqrt(np.mean(np.square(y)))) if y.size else 0.0
    if rms > 0:
        y = y * (10 ** (TARGET_RMS_DBFS / 20) / rms)
        peak = float(np.max(np.abs(y)))
        if peak > PEAK_LIMIT:
            y = y * (PEAK_LIMIT / peak)
    return to_int16(y)


def _recipe(segments: list[tuple[str, str]], voices: dict[str, dict]) -> str:
    spec = [[lang, words, voices.get(lang) or DEFAULT_VOICES[lang]] for lang, words in segments]
    blob = json.dumps([RECIPE_VERSION, spec], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def jobs(manifest: Manifest, langs: list[str], only: set[str] | None):
    """(relative stem, segments) for everything to make."""
    for lang in langs:
        for prompt_id in manifest.ids:
            if only and prompt_id not in only:
                continue
            yield f"{lang}/{prompt_id}", manifest.segments(prompt_id, lang)
        if lang == "zh":
            for name, words in ZH_DIGITS.items():
                if only and f"digits/{name}" not in only:
                    continue
                yield f"zh/digits/{name}", [("zh", words)]


def name_jobs(langs: list[str], only: set[str] | None, config_path: Path | None = None):
    """(relative stem, segments) for the names of the demo rewards (``core.demo``) and the
    configured couriers (``[couriers]``): ``reward_<code>``, ``courier_<code>`` in each
    language, so the demo speaks names out of the box."""
    from core.config import load_config
    from core.demo import DEMO_REWARDS

    couriers = load_config(config_path).couriers
    for lang in langs:
        named = [(reward_prompt_id(r.code), r.name(lang)) for r in DEMO_REWARDS]
        named += [(courier_prompt_id(c.code), c.zh if lang == "zh" else c.en) for c in couriers]
        for prompt_id, words in named:
            if prompt_id is None or (only and prompt_id not in only):
                continue
            yield f"{lang}/{prompt_id}", [(lang, words)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prompts.generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=DEFAULT_AUDIO_ROOT)
    parser.add_argument("--lang", action="append", help="only this language (repeatable)")
    parser.add_argument("--only", action="append",
                        help="only this id or digits/<name> (repeatable)")
    parser.add_argument("--force", action="store_true", help="remake even unchanged prompts")
    parser.add_argument("--config", type=Path, default=None,
                        help="configuration whose [couriers] get a name (default: the usual)")
    parser.add_argument("--no-names", action="store_true",
                        help="skip the demo rewards' and the couriers' names")
    args = parser.parse_args(argv)

    manifest = load_manifest(args.manifest)
    voices = {**DEFAULT_VOICES, **{k: dict(v) for k, v in manifest.tts.items()}}
    langs = args.lang or list(manifest.languages)
    index_path = args.out / "generated.json"
    index = json.loads(index_path.read_text("utf-8")) if index_path.exists() else {}
    made = skipped = 0
    only = set(args.only) if args.only else None
    todo = list(jobs(manifest, langs, only))
    if not args.no_names:
        todo += list(name_jobs(langs, only, args.config))
    for n, (stem, segments) in enumerate(todo, 1):
        recipe = _recipe(segments, voices)
        target = args.out / stem
        have = all(target.with_name(target.name + ext).exists() for ext in (".wav", ".sln"))
        if not args.force and have and index.get(stem) == recipe:
            skipped += 1
            continue
        write_prompt(target, render(segments, voices))
        index[stem] = recipe
        made += 1
        print(f"[{n}/{len(todo)}] {stem}", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    index_path.write_text(json.dumps(dict(sorted(index.items())), indent=1, ensure_ascii=False)
                          + "\n", encoding="utf-8")
    print(f"made {made}, unchanged {skipped}, in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
