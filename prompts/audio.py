"""Reading, measuring and converting prompt audio: pure Python + numpy.

Asterisk plays 8 kHz mono signed 16-bit audio (``.wav`` with a 44-byte header, or headerless
``.sln``). Everything here exists to turn whatever ops hand us into exactly that, and to say in
plain words why a file is refused.

Readable without any external tool: RIFF/WAVE (PCM 8/16/24/32-bit, IEEE float 32/64, G.711
A-law/mu-law, WAVE_FORMAT_EXTENSIBLE of those), raw ``.sln`` (8 kHz), ``.sln16`` (16 kHz),
``.ul``/``.ulaw``/``.pcm`` (8 kHz mu-law) and ``.al``/``.alaw`` (8 kHz A-law). Any other format
(mp3, ogg, flac...) is decoded with ``sox`` when it is installed; without it the file is refused
with a message saying so.
"""

from __future__ import annotations

import io
import math
import os
import shutil
import struct
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TARGET_RATE = 8000

# File name extensions we decode ourselves, and the ones we hand to sox.
NATIVE_EXTENSIONS = (".wav", ".sln", ".sln16", ".ul", ".ulaw", ".pcm", ".al", ".alaw")
SOX_EXTENSIONS = (".mp3", ".ogg", ".oga", ".opus", ".flac", ".aif", ".aiff", ".au", ".gsm",
                  ".m4a", ".wv", ".raw8")
AUDIO_EXTENSIONS = NATIVE_EXTENSIONS + SOX_EXTENSIONS

_WAVE_FORMAT_PCM = 0x0001
_WAVE_FORMAT_FLOAT = 0x0003
_WAVE_FORMAT_ALAW = 0x0006
_WAVE_FORMAT_MULAW = 0x0007
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE
# Sizes some streaming writers leave in the header when they could not seek back.
_STREAMING_SIZES = (0, 0xFFFFFFFF)


class AudioError(ValueError):
    """A file that cannot be used as prompt audio; ``str()`` is a plain-words reason."""


@dataclass(frozen=True)
class Audio:
    """Decoded audio: ``samples`` is float64, shape (frames, channels), in [-1, 1]."""

    samples: np.ndarray
    rate: int
    full_scale: np.ndarray  # bool, same shape: sample sat at the format's full scale
    source_format: str

    @property
    def channels(self) -> int:
        return int(self.samples.shape[1])

    @property
    def frames(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration(self) -> float:
        return self.frames / self.rate if self.rate else 0.0


# --------------------------------------------------------------------------- G.711


def _ulaw_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _alaw_table() -> np.ndarray:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(
        exponent == 0,
        (mantissa << 4) + 8,
        ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0),
    )
    return np.where(sign != 0, magnitude, -magnitude).astype(np.int16)


_ULAW = _ulaw_table()
_ALAW = _alaw_table()


# --------------------------------------------------------------------------- decoding


def _from_ints(ints: np.ndarray, bits: int, channels: int, fmt: str, rate: int) -> Audio:
    ints = ints.reshape(-1, channels)
    top = (1 << (bits - 1)) - 1
    bottom = -(1 << (bits - 1))
    full = (ints >= top - 1) | (ints <= bottom + 1)
    return Audio(ints.astype(np.float64) / float(1 << (bits - 1)), rate, full, fmt)


def _decode_pcm(data: bytes, bits: int, channels: int, rate: int) -> Audio:
    fmt = f"{bits}-bit PCM"
    if bits == 8:  # unsigned
        ints = np.frombuffer(data, dtype=np.uint8).astype(np.int32) - 128
    elif bits == 16:
        ints = np.frombuffer(data, dtype="<i2").astype(np.int32)
    elif bits == 24:
        raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        ints = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
        ints = np.where(ints & 0x800000, ints - (1 << 24), ints)
    elif bits == 32:
        ints = np.frombuffer(data, dtype="<i4").astype(np.int64)
    else:
        raise AudioError(f"{bits}-bit PCM is not supported (use 16-bit)")
    return _from_ints(ints, bits, channels, fmt, rate)


def _decode_float(data: bytes, bits: int, channels: int, rate: int) -> Audio:
    if bits not in (32, 64):
        raise AudioError(f"{bits}-bit floating point audio is not supported")
    values = np.frombuffer(data, dtype="<f4" if bits == 32 else "<f8").astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise AudioError("the floating point samples contain NaN or infinity")
    values = values.reshape(-1, channels)
    full = np.abs(values) >= 0.9999
    return Audio(np.clip(values, -1.0, 1.0), rate, full, f"{bits}-bit float")


def _decode_g711(data: bytes, table: np.ndarray, channels: int, rate: int, name: str) -> Audio:
    ints = table[np.frombuffer(data, dtype=np.uint8)].astype(np.int32)
    audio = _from_ints(ints, 16, channels, name, rate)
    # G.711's largest code is +-32124 (mu) / +-32256 (A): full scale is the largest code.
    peak = int(np.abs(table.astype(np.int32)).max())
    full = np.abs(ints.reshape(-1, channels)) >= peak
    return Audio(audio.samples, rate, full, name)


def parse_wav(blob: bytes) -> Audio:
    """Decode a RIFF/WAVE file held in memory."""
    if len(blob) < 12:
        raise AudioError("the file is too short to be a WAV file")
    if blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        if blob[:4] == b"RIFX":
            raise AudioError("big-endian WAV (RIFX) is not supported")
        raise AudioError("not a WAV file (no RIFF/WAVE header)")
    pos = 12
    fmt: tuple[int, int, int, int, int] | None = None
    data: bytes | None = None
    while pos + 8 <= len(blob):
        chunk_id = blob[pos:pos + 4]
        (size,) = struct.unpack_from("<I", blob, pos + 4)
        body_start = pos + 8
        available = len(blob) - body_start
        if chunk_id == b"data":
            if size > available:
                if size in _STREAMING_SIZES or size >= 0x7FFF0000:
                    size = available  # written by a streaming tool that could not seek back
                else:
                    raise AudioError(
                        f"the file is truncated: its header announces {size} bytes of sound "
                        f"but only {available} are there"
                    )
            data = blob[body_start:body_start + size]
            if fmt is not None:
                break
        elif chunk_id == b"fmt ":
            if size < 16 or size > available:
                raise AudioError("the WAV format header is damaged")
            tag, channels, rate, _byte_rate, align, bits = struct.unpack_from(
                "<HHIIHH", blob, body_start)
            if tag == _WAVE_FORMAT_EXTENSIBLE:
                if size < 40:
                    raise AudioError("the WAV extensible format header is damaged")
                (tag,) = struct.unpack_from("<H", blob, body_start + 24)
            fmt = (tag, channels, rate, align, bits)
            if data is not None:
                break
        elif size > available:
            break
        pos = body_start + size + (size & 1)
    if fmt is None:
        raise AudioError("the WAV file has no format header (fmt chunk)")
    if data is None:
        raise AudioError("the WAV file has no sound data (data chunk)")
    tag, channels, rate, align, bits = fmt
    if channels < 1 or channels > 16:
        raise AudioError(f"the WAV header gives an impossible channel count ({channels})")
    if rate < 1000 or rate > 384000:
        raise AudioError(f"the WAV header gives an impossible sample rate ({rate} Hz)")
    if align <= 0:
        raise AudioError("the WAV format header is damaged (block align 0)")
    data = data[: len(data) - (len(data) % align)]
    if tag == _WAVE_FORMAT_PCM:
        width = (bits + 7) // 8
        if align != width * channels:
            raise AudioError("the WAV format header is inconsistent (block align)")
        return _decode_pcm(data, width * 8, channels, rate)
    if tag == _WAVE_FORMAT_FLOAT:
        return _decode_float(data, bits, channels, rate)
    if tag == _WAVE_FORMAT_MULAW:
        return _decode_g711(data, _ULAW, channels, rate, "mu-law")
    if tag == _WAVE_FORMAT_ALAW:
        return _decode_g711(data, _ALAW, channels, rate, "A-law")
    raise AudioError(
        f"WAV encoding 0x{tag:04x} is not supported here (use PCM; other encodings need sox)")


def _decode_raw(blob: bytes, ext: str) -> Audio:
    if ext in (".sln", ".sln16"):
        if len(blob) % 2:
            raise AudioError("a raw .sln file must have an even number of bytes")
        return _decode_pcm(blob, 16, 1, 16000 if ext == ".sln16" else 8000)
    if ext in (".ul", ".ulaw", ".pcm"):
        return _decode_g711(blob, _ULAW, 1, 8000, "mu-law")
    return _decode_g711(blob, _ALAW, 1, 8000, "A-law")


def sox_available() -> bool:
    return shutil.which("sox") is not None


def _decode_with_sox(path: Path) -> Audio:
    if not sox_available():
        raise AudioError(
            f"{path.suffix} files need the 'sox' program to decode, and it is not installed "
            "(Debian: apt-get install sox libsox-fmt-all), or convert the file to WAV first"
        )
    try:
        proc = subprocess.run(
            ["sox", "-V1", str(path), "-t", "wav", "-e", "signed-integer", "-b", "16", "-"],
            capture_output=True, timeout=120, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AudioError(f"sox could not decode it ({exc})") from None
    if proc.returncode != 0:
        reason = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise AudioError("sox could not decode it" + (f": {reason[-1]}" if reason else ""))
    return parse_wav(proc.stdout)


def read_audio(path: str | os.PathLike) -> Audio:
    """Decode any supported file; raises ``AudioError`` with a plain-words reason."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in AUDIO_EXTENSIONS:
        raise AudioError(f"'{path.suffix or path.name}' is not an audio file type we know")
    if ext in SOX_EXTENSIONS:
        return _decode_with_sox(path)
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise AudioError(f"cannot read the file ({exc.strerror or exc})") from None
    if ext == ".wav":
        return parse_wav(blob)
    return _decode_raw(blob, ext)


# --------------------------------------------------------------------------- measuring


def to_mono(audio: Audio) -> np.ndarray:
    """Average the channels; returns a 1-D float64 array."""
    return audio.samples.mean(axis=1) if audio.channels > 1 else audio.samples[:, 0].copy()


def rms_dbfs(mono: np.ndarray) -> float:
    if mono.size == 0:
        return -math.inf
    rms = float(np.sqrt(np.mean(np.square(mono))))
    return 20.0 * math.log10(rms) if rms > 0 else -math.inf


def clipped_fraction(audio: Audio, min_run: int = 3) -> float:
    """Share of samples that sit at full scale in runs of ``min_run`` or more.

    A lone full-scale sample is what a loud but clean recording has at its peaks; flat tops
    several samples long are what clipping leaves.
    """
    full = audio.full_scale
    if full.size == 0:
        return 0.0
    total = 0
    for ch in range(full.shape[1]):
        flags = full[:, ch].astype(np.int8)
        if not flags.any():
            continue
        edges = np.diff(np.concatenate(([0], flags, [0])))
        starts = np.flatnonzero(edges == 1)
        ends = np.flatnonzero(edges == -1)
        runs = ends - starts
        total += int(runs[runs >= min_run].sum())
    return total / full.size


# --------------------------------------------------------------------------- resampling


def _kaiser_lowpass(up: int, down: int, zero_crossings: int = 16,
                    beta: float = 8.0) -> tuple[np.ndarray, int]:
    """Windowed-sinc anti-aliasing filter for rational resampling by up/down."""
    ratio = max(up, down)
    half = zero_crossings * ratio
    n = np.arange(-half, half + 1, dtype=np.float64)
    cutoff = 0.95 / ratio  # a little below the lower Nyquist, to leave a transition band
    taps = cutoff * np.sinc(cutoff * n) * np.kaiser(2 * half + 1, beta)
    taps *= up / taps.sum()
    return taps, half


def resample(mono: np.ndarray, rate_in: int, rate_out: int = TARGET_RATE,
             chunk: int = 8192) -> np.ndarray:
    """Polyphase windowed-sinc resampling (Kaiser window); keeps duration and timing."""
    if rate_in == rate_out or mono.size == 0:
        return mono.astype(np.float64, copy=True)
    g = math.gcd(rate_in, rate_out)
    up, down = rate_out // g, rate_in // g
    taps, half = _kaiser_lowpass(up, down)
    per_phase = -(-taps.size // up)
    padded_taps = np.zeros(per_phase * up)
    padded_taps[: taps.size] = taps
    # phases[p, k] = taps[p + k*up]: the taps that meet input samples for output phase p
    phases = padded_taps.reshape(per_phase, up).T.copy()
    n_out = int(round(mono.size * rate_out / rate_in))
    x = np.concatenate((np.zeros(per_phase), mono.astype(np.float64), np.zeros(per_phase + 1)))
    out = np.empty(n_out)
    k = np.arange(per_phase)
    for start in range(0, n_out, chunk):
        m = np.arange(start, min(start + chunk, n_out), dtype=np.int64)
        pos = m * down + half  # position in the zero-stuffed signal, filter centred
        phase = pos % up
        base = pos // up + per_phase  # index in x (shifted by the leading pad)
        idx = base[:, None] - k[None, :]
        np.clip(idx, 0, x.size - 1, out=idx)
        out[start:start + m.size] = np.einsum("ij,ij->i", phases[phase], x[idx])
    return out


def to_int16(mono: np.ndarray) -> np.ndarray:
    return np.clip(np.round(mono * 32768.0), -32768, 32767).astype("<i2")


def convert(audio: Audio, rate: int = TARGET_RATE) -> np.ndarray:
    """Mono mixdown + resampling + 16-bit quantisation: what Asterisk wants."""
    return to_int16(resample(to_mono(audio), audio.rate, rate))


# --------------------------------------------------------------------------- writing


def wav_bytes(pcm: np.ndarray, rate: int = TARGET_RATE) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(pcm, dtype="<i2").tobytes())
    return buf.getvalue()


def write_prompt(stem: Path, pcm: np.ndarray) -> list[Path]:
    """Write ``<stem>.wav`` and ``<stem>.sln`` (the same samples, with and without header)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    wav_path = stem.with_name(stem.name + ".wav")
    sln_path = stem.with_name(stem.name + ".sln")
    wav_path.write_bytes(wav_bytes(pcm))
    sln_path.write_bytes(np.asarray(pcm, dtype="<i2").tobytes())
    return [wav_path, sln_path]


def wav_payload(path: str | os.PathLike) -> tuple[bytes, int, int, int]:
    """(frames, rate, channels, sample width) of a plain PCM WAV, via the ``wave`` module."""
    try:
        with wave.open(str(path), "rb") as w:
            return (w.readframes(w.getnframes()), w.getframerate(), w.getnchannels(),
                    w.getsampwidth())
    except (wave.Error, EOFError, OSError) as exc:
        raise AudioError(f"not a readable PCM WAV file ({exc})") from None
