"""The committed default set: complete, in Asterisk's format, and enough for zh numbers/dates."""

from __future__ import annotations

import random
import wave
from datetime import date, datetime, timedelta

import pytest

from prompts import DEFAULT_AUDIO_ROOT, EN_DATETIME_FORMAT, ZH_DATETIME_FORMAT, zh_date_format
from prompts.manifest import load_manifest
from prompts.say import ZH_DIGITS_FILES, zh_datetime_files, zh_number_files, zh_time_files
from prompts.store import check

ZH = DEFAULT_AUDIO_ROOT / "zh"


@pytest.fixture(scope="module")
def manifest():
    return load_manifest()


def have(name: str) -> bool:
    return (ZH / f"{name}.wav").is_file() and (ZH / f"{name}.sln").is_file()


def test_every_id_has_audio_in_every_language(manifest):
    assert check(manifest, DEFAULT_AUDIO_ROOT, manifest.ids) == []
    for lang in manifest.languages:
        for prompt_id in manifest.ids:
            for ext in (".wav", ".sln"):
                assert (DEFAULT_AUDIO_ROOT / lang / f"{prompt_id}{ext}").is_file()


def test_committed_wav_is_asterisk_format_and_sln_is_its_payload():
    wavs = sorted(DEFAULT_AUDIO_ROOT.rglob("*.wav"))
    assert len(wavs) > 150
    for path in wavs:
        with wave.open(str(path), "rb") as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2), path
            frames = w.readframes(w.getnframes())
        assert 0.25 <= len(frames) / 16000 <= 30, path
        assert path.with_suffix(".sln").read_bytes() == frames, path


def test_committed_audio_stays_small():
    # About 135 prompts in two languages, each as .wav and .sln (8 kHz, 16-bit): 18 MiB with
    # the tickets and preferences menus. A jump past this means something else was committed.
    total = sum(p.stat().st_size for p in DEFAULT_AUDIO_ROOT.rglob("*") if p.is_file())
    assert total < 24 * 1024 * 1024


def test_digits_pack_is_exactly_what_is_committed():
    on_disk = {f"digits/{p.stem}" for p in (ZH / "digits").glob("*.wav")}
    assert on_disk == set(ZH_DIGITS_FILES)
    assert all(have(name) for name in ZH_DIGITS_FILES)


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(("number", "files"), [
    (0, ["0"]),
    (7, ["7"]),
    (10, ["10"]),
    (15, ["10", "5"]),
    (105, ["1", "hundred", "0", "5"]),
    (1005, ["1", "thousand", "0", "5"]),
    (1050, ["1", "thousand", "0", "50"]),
    (2026, ["2", "thousand", "0", "20", "6"]),
    (10005, ["1", "wan", "0", "5"]),
    (12345678, ["1", "thousand", "2", "hundred", "30", "4", "wan",
                "5", "thousand", "6", "hundred", "70", "8"]),
    (-3, ["minus", "3"]),
])
def test_number_model_follows_say_c(number, files):
    assert zh_number_files(number) == [f"digits/{f}" for f in files]


def numbers_to_cover():
    rng = random.Random(20240601)
    edges = [0, 1, 9, 10, 11, 19, 20, 99, 100, 101, 110, 999, 1000, 1001, 1010, 1100, 9999,
             10000, 10001, 10010, 10100, 11000, 99999, 100000, 100001, 999999, 1000000,
             1000001, 10000000, 10000001, 99999999]
    ranges = [range(0, 20000)]
    randoms = [rng.randrange(0, 100_000_000) for _ in range(20000)]
    for exp in range(1, 9):
        randoms += [rng.randrange(10 ** (exp - 1), 10 ** exp) for _ in range(500)]
    return edges, ranges, randoms


def test_digits_pack_covers_every_number_up_to_99_999_999():
    edges, ranges, randoms = numbers_to_cover()
    needed = set()
    for n in edges + randoms:
        needed.update(zh_number_files(n))
    for r in ranges:
        for n in r:
            needed.update(zh_number_files(n))
    needed.update(zh_number_files(-99_999_999))
    missing = sorted(name for name in needed if not have(name))
    assert missing == []
    # and structurally: say.c only ever names these files for numbers below 10^8
    allowed = {f"digits/{i}" for i in range(10)} | {f"digits/{i}" for i in range(10, 100, 10)}
    allowed |= {"digits/hundred", "digits/thousand", "digits/wan", "digits/minus"}
    assert needed <= allowed
    assert all(have(name) for name in allowed)
    assert have("digits/yi")  # for 10^8 and up


# --------------------------------------------------------------------------- dates


def every_day(start: date, end: date):
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)


def test_zh_date_formats_are_covered_for_a_century():
    needed = set()
    for day in every_day(date(2000, 1, 1), date(2099, 12, 31)):
        when = datetime(day.year, day.month, day.day, 12, 0)
        needed.update(zh_datetime_files(ZH_DATETIME_FORMAT, when))
        needed.update(zh_datetime_files(zh_date_format(day), when))
        needed.update(zh_datetime_files("A", when))
    assert sorted(n for n in needed if not have(n)) == []


def test_zh_time_items_are_covered_for_a_whole_day():
    needed = set()
    start = datetime(2025, 6, 1)
    for minute in range(24 * 60):
        when = start + timedelta(minutes=minute, seconds=minute % 60)
        needed.update(zh_datetime_files("IpHkMSRTQq", when, now=start))
        needed.update(zh_time_files(when))
    assert sorted(n for n in needed if not have(n)) == []


def test_zh_date_format_reads_the_year_digit_by_digit():
    fmt = zh_date_format(date(2026, 12, 31))
    assert fmt == "'digits/2' 'digits/0' 'digits/2' 'digits/6' 'digits/year' Bd"
    assert zh_datetime_files(fmt, datetime(2026, 12, 31)) == [
        "digits/2", "digits/0", "digits/2", "digits/6", "digits/year",
        "digits/mon-11", "digits/30", "digits/1", "digits/day"]
    # say.c's own "Y" reads 2026 as 2-thousand-2-6
    assert zh_datetime_files(ZH_DATETIME_FORMAT, datetime(2026, 3, 5))[:5] == [
        "digits/2", "digits/thousand", "digits/2", "digits/6", "digits/year"]


def test_en_format_is_month_day_year():
    assert EN_DATETIME_FORMAT == "BdY"
