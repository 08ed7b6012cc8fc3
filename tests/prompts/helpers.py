"""Synthetic audio for the prompt tests (pure Python + numpy)."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np


def tone(seconds: float, rate: int, freq: float = 440.0, amplitude: float = 0.5,
         channels: int = 1) -> np.ndarray:
    """A sine tone, float in [-1, 1], shape (frames, channels); right channel at 0.8x."""
    t = np.arange(int(round(seconds * rate))) / rate
    x = amplitude * np.sin(2 * np.pi * freq * t)
    cols = [x * (1.0 if ch == 0 else 0.8) for ch in range(channels)]
    return np.stack(cols, axis=1)


def write_wav(path: Path, samples: np.ndarray, rate: int, width: int = 2) -> Path:
    """Write a PCM WAV with the ``wave`` module (8/16/24/32-bit)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = np.atleast_2d(samples.T).T if samples.ndim == 1 else samples
    full = float(1 << (8 * width - 1))
    ints = np.clip(np.round(samples * full), -full, full - 1).astype(np.int64)
    if width == 1:
        data = (ints + 128).astype(np.uint8).tobytes()
    elif width == 2:
        data = ints.astype("<i2").tobytes()
    elif width == 3:
        flat = ints.reshape(-1) & 0xFFFFFF
        data = b"".join(struct.pack("<I", int(v))[:3] for v in flat)
    else:
        data = ints.astype("<i4").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(samples.shape[1])
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(data)
    return path


def write_float_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    """IEEE float 32-bit WAV (format tag 3), which the ``wave`` module cannot write."""
    samples = samples.reshape(len(samples), -1)
    channels = samples.shape[1]
    data = samples.astype("<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, channels, rate, rate * channels * 4, channels * 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (following the top symlink), by relative path."""
    root = root.resolve()
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}
