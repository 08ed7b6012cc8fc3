"""Checking one new recording before it may join a prompt set: decodable, long enough, not too
long, not silent, not clipped; then converted to 8 kHz mono 16-bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prompts.audio import AudioError, clipped_fraction, convert, read_audio, rms_dbfs, to_mono

# Validation limits for loaded recordings.
MIN_DURATION_S = 0.2
MAX_DURATION_S = 60.0
SILENCE_DBFS = -50.0        # a whole file quieter than this (RMS) counts as silent
MAX_CLIPPED_FRACTION = 0.001  # more than 0.1% of samples flat at full scale counts as clipped


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


def refusal_kind(reason: str) -> str:
    for key, kind in (("too short", "too-short"), ("too long", "too-long"),
                      ("silent", "silent"), ("clipped", "clipped")):
        if key in reason:
            return kind
    return "unreadable"
