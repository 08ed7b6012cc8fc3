"""Decoding and conversion: pure Python + numpy, no sox."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from prompts import audio as audio_mod
from prompts.audio import (
    AudioError,
    clipped_fraction,
    convert,
    parse_wav,
    read_audio,
    resample,
)

from .helpers import tone, write_float_wav, write_wav


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / rate)[np.argmax(spectrum)])


@pytest.mark.parametrize("rate", [44100, 48000, 22050, 16000, 11025, 8000, 6000])
def test_resample_keeps_duration_and_pitch(rate):
    x = tone(1.5, rate, freq=440.0)[:, 0]
    y = resample(x, rate, 8000)
    assert abs(y.size / 8000 - 1.5) < 0.001
    assert abs(peak_hz(y, 8000) - 440.0) < 3
    mid = y[2000:-2000]
    assert np.sqrt(np.mean(mid ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


def test_resample_removes_what_8_khz_cannot_carry():
    # 6 kHz at 44.1 kHz would alias to 2 kHz with a naive decimator.
    x = tone(1.0, 44100, freq=6000.0)[:, 0]
    y = resample(x, 44100, 8000)
    level_db = 20 * np.log10(np.sqrt(np.mean(y[1000:-1000] ** 2)) / (0.5 / np.sqrt(2)))
    assert level_db < -60


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_pcm_widths_decode(tmp_path, width):
    path = write_wav(tmp_path / f"w{width}.wav", tone(0.5, 16000, amplitude=0.5), 16000, width)
    audio = read_audio(path)
    assert audio.rate == 16000 and audio.channels == 1
    assert np.max(np.abs(audio.samples)) == pytest.approx(0.5, abs=0.01)


def test_float_wav_decodes(tmp_path):
    path = write_float_wav(tmp_path / "f.wav", tone(0.5, 48000, channels=2), 48000)
    audio = read_audio(path)
    assert (audio.rate, audio.channels, audio.source_format) == (48000, 2, "32-bit float")
    pcm = convert(audio)
    assert pcm.dtype == np.dtype("<i2") and abs(pcm.size - 4000) <= 1


def test_g711_tables_are_the_standard_ones():
    # mu-law 0xFF / A-law 0xD5 are (near) zero; the extreme codes are +-32124 / +-32256
    assert audio_mod._ULAW[0xFF] == 0 and audio_mod._ULAW[0x00] == -32124
    assert audio_mod._ULAW[0x80] == 32124
    assert abs(int(audio_mod._ALAW[0xD5])) == 8 and audio_mod._ALAW[0xAA] == 32256
    assert audio_mod._ALAW[0x2A] == -32256


def test_raw_formats(tmp_path):
    pcm = (tone(0.5, 8000)[:, 0] * 20000).astype("<i2")
    (tmp_path / "a.sln").write_bytes(pcm.tobytes())
    audio = read_audio(tmp_path / "a.sln")
    assert audio.rate == 8000 and audio.frames == 4000
    (tmp_path / "b.ulaw").write_bytes(bytes(range(256)) * 10)
    assert read_audio(tmp_path / "b.ulaw").frames == 2560


def test_wav_extensible_header(tmp_path):
    data = (tone(0.3, 8000)[:, 0] * 10000).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 0xFFFE, 1, 8000, 16000, 2, 16)
    fmt += struct.pack("<HHI", 22, 16, 4) + struct.pack("<H", 1) + b"\x00" * 14
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    audio = parse_wav(b"RIFF" + struct.pack("<I", len(body)) + body)
    assert audio.frames == 2400


@pytest.mark.parametrize(("blob", "reason"), [
    (b"", "too short to be a WAV"),
    (b"ID3\x03" + b"\x00" * 100, "not a WAV file"),
    (b"RIFF\x10\x00\x00\x00WAVEjunk\x00\x00\x00\x00", "no format header"),
])
def test_garbage_is_refused_in_plain_words(blob, reason):
    with pytest.raises(AudioError, match=reason):
        parse_wav(blob)


def test_truncated_wav_is_refused(tmp_path):
    path = write_wav(tmp_path / "t.wav", tone(1.0, 8000), 8000)
    blob = path.read_bytes()
    with pytest.raises(AudioError, match="truncated"):
        parse_wav(blob[: len(blob) // 2])


def test_streaming_size_in_header_is_tolerated(tmp_path):
    path = write_wav(tmp_path / "s.wav", tone(1.0, 8000), 8000)
    blob = bytearray(path.read_bytes())
    blob[40:44] = struct.pack("<I", 0xFFFFFFFF)
    assert parse_wav(bytes(blob)).frames == 8000


def test_clipping_measure_ignores_clean_peaks(tmp_path):
    clean = read_audio(write_wav(tmp_path / "c.wav", tone(1.0, 44100, amplitude=1.0), 44100))
    assert clipped_fraction(clean) == 0.0
    hot = np.clip(tone(1.0, 44100, amplitude=3.0), -1, 1)
    clipped = read_audio(write_wav(tmp_path / "h.wav", hot, 44100))
    assert clipped_fraction(clipped) > 0.5


def test_other_formats_need_sox_and_say_so(tmp_path, monkeypatch):
    monkeypatch.setattr(audio_mod.shutil, "which", lambda name: None)
    path = tmp_path / "x.mp3"
    path.write_bytes(b"\xff\xfb" + b"\x00" * 200)
    with pytest.raises(AudioError, match="need the 'sox' program"):
        read_audio(path)
    with pytest.raises(AudioError, match="not an audio file type"):
        read_audio(tmp_path / "notes.txt")
