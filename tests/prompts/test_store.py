"""Loading recordings (validation, conversion, atomic swap), installing, set versions."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import wave

import numpy as np
import pytest

from prompts import DEFAULT_AUDIO_ROOT
from prompts import store as store_mod
from prompts.audio import sox_available
from prompts.install import install
from prompts.manifest import load_manifest
from prompts.say import ZH_DIGITS
from prompts.store import (
    PromptError,
    active_root,
    check,
    current_set_version,
    load,
    load_root,
)

from .helpers import tone, tree_bytes, write_wav


@pytest.fixture(scope="module")
def manifest():
    return load_manifest()


@pytest.fixture
def root(tmp_path):
    return tmp_path / "var" / "prompts"


def wav_info(path):
    with wave.open(str(path), "rb") as w:
        return w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()


def test_stereo_44k_loads_as_8k_mono_16bit_same_duration(tmp_path, root, manifest):
    src = tmp_path / "in"
    write_wav(src / "welcome.wav", tone(2.345, 44100, channels=2), 44100)
    seen = []
    report = load(src, "zh", root, manifest, progress=lambda *a: seen.append(a))
    assert report.ok and report.swapped, report.errors
    assert report.loaded == ["welcome"]
    assert seen == [(1, 1, "welcome.wav", "ok")]
    rate, channels, width, frames = wav_info(root / "zh" / "welcome.wav")
    assert (rate, channels, width) == (8000, 1, 2)
    assert abs(frames / 8000 - 2.345) <= 0.020
    with wave.open(str(root / "zh" / "welcome.wav"), "rb") as w:
        payload = w.readframes(w.getnframes())
    assert (root / "zh" / "welcome.sln").read_bytes() == payload
    # the rest of the set is the previous (default) audio, and the root is complete
    assert report.kept == [i for i in manifest.ids if i != "welcome"]
    assert report.missing == []
    assert (root / "zh" / "goodbye.wav").read_bytes() == (
        DEFAULT_AUDIO_ROOT / "zh" / "goodbye.wav").read_bytes()
    assert check(manifest, root, manifest.ids) == []


def test_first_load_seeds_every_language(tmp_path, root, manifest):
    src = tmp_path / "in"
    write_wav(src / "goodbye.wav", tone(1.0, 16000), 16000)
    assert load(src, "en", root, manifest).swapped
    assert (root / "zh").is_symlink() and (root / "en").is_symlink()
    assert tree_bytes(root / "zh") == tree_bytes(DEFAULT_AUDIO_ROOT / "zh")


def test_corrupt_file_is_rejected_and_old_set_stays_byte_identical(tmp_path, root, manifest):
    good = tmp_path / "good"
    write_wav(good / "welcome.wav", tone(1.0, 8000), 8000)
    assert load(good, "zh", root, manifest).swapped
    before = tree_bytes(root / "zh")
    target_before = os.readlink(root / "zh")

    bad = tmp_path / "bad"
    write_wav(bad / "goodbye.wav", tone(1.0, 8000, freq=300), 8000)
    (bad / "welcome.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage")
    report = load(bad, "zh", root, manifest)
    assert not report.ok and not report.swapped
    assert len(report.errors) == 1
    message = str(report.errors[0])
    assert message.startswith("welcome.wav: cannot be read:")
    assert "format header is damaged" in message
    assert os.readlink(root / "zh") == target_before
    assert tree_bytes(root / "zh") == before
    assert not any(p.name.startswith(".staging") for p in (root / ".sets").iterdir())


def test_silent_file_is_rejected(tmp_path, root, manifest):
    src = tmp_path / "in"
    write_wav(src / "welcome.wav", np.zeros((16000, 1)), 16000)
    write_wav(src / "goodbye.wav", tone(1.0, 16000, amplitude=0.001), 16000)  # -63 dBFS
    report = load(src, "en", root, manifest)
    assert not report.swapped
    messages = sorted(str(p) for p in report.errors)
    assert messages[0].startswith("goodbye.wav: is silent or nearly silent (level -63 dBFS")
    assert messages[1].startswith("welcome.wav: is silent or nearly silent (level no signal")
    assert {p.kind for p in report.errors} == {"silent"}
    assert not (root / "en").exists()


def test_clipped_file_is_rejected(tmp_path, root, manifest):
    src = tmp_path / "in"
    write_wav(src / "welcome.wav", np.clip(tone(1.0, 22050, amplitude=4.0), -1, 1), 22050)
    report = load(src, "en", root, manifest)
    assert [p.kind for p in report.errors] == ["clipped"]
    assert "welcome.wav: is clipped (" in str(report.errors[0])
    assert "record it again at a lower level" in str(report.errors[0])


def test_loud_but_clean_file_is_accepted(tmp_path, root, manifest):
    src = tmp_path / "in"
    write_wav(src / "welcome.wav", tone(1.0, 44100, amplitude=1.0), 44100)
    assert load(src, "en", root, manifest).swapped


def test_duration_bounds(tmp_path, root, manifest):
    src = tmp_path / "in"
    write_wav(src / "welcome.wav", tone(0.1, 8000), 8000)
    write_wav(src / "goodbye.wav", tone(61, 8000), 8000)
    report = load(src, "en", root, manifest)
    kinds = {p.prompt_id: p.kind for p in report.errors}
    assert kinds == {"welcome": "too-short", "goodbye": "too-long"}
    assert "too short (0.10 s; at least 0.2 s)" in " ".join(map(str, report.errors))


def test_wrong_name_is_reported_with_a_suggestion(tmp_path, root, manifest):
    src = tmp_path / "in"
    write_wav(src / "welcom.wav", tone(1.0, 8000), 8000)
    write_wav(src / "goodbye.wav", tone(1.0, 8000), 8000)
    (src / "README.txt").write_text("notes")
    (src / ".DS_Store").write_bytes(b"x")
    report = load(src, "en", root, manifest)
    assert not report.swapped
    assert report.extra == ["welcom"]
    assert [str(p) for p in report.errors] == [
        "welcom.wav: the name matches no prompt id in the manifest (did you mean 'welcome'?)"]
    assert report.ignored == ["README.txt"]
    # the operator may choose to skip such files
    report = load(src, "en", root, manifest, allow_extra=True)
    assert report.swapped and report.loaded == ["goodbye"] and report.extra == ["welcom"]


def test_missing_and_extra_ids_are_reported(tmp_path, root, manifest):
    # a root whose base set lacks two prompts: the load says which ids still have no audio
    base = tmp_path / "base"
    for lang in manifest.languages:
        (base / lang).mkdir(parents=True)
        for prompt_id in manifest.ids[2:]:
            for ext in (".wav", ".sln"):
                src_file = DEFAULT_AUDIO_ROOT / lang / f"{prompt_id}{ext}"
                (base / lang / src_file.name).write_bytes(src_file.read_bytes())
    src = tmp_path / "in"
    write_wav(src / f"{manifest.ids[0]}.wav", tone(1.0, 8000), 8000)
    report = load(src, "en", root, manifest, base_root=base)
    assert report.swapped
    assert report.missing == [manifest.ids[1]]
    assert manifest.ids[1] in report.kept
    problems = check(manifest, root, [*manifest.ids, "not_in_manifest"])
    messages = [str(p) for p in problems]
    assert any("'not_in_manifest', which the manifest does not define" in m for m in messages)
    assert any(m.startswith(f"en/{manifest.ids[1]}: no audio") for m in messages)
    assert any(m.startswith(f"zh/{manifest.ids[0]}: no audio") for m in messages)


def test_duplicate_files_for_one_id(tmp_path, root, manifest):
    src = tmp_path / "in"
    write_wav(src / "welcome.wav", tone(1.0, 8000), 8000)
    (src / "welcome.sln").write_bytes((tone(1.0, 8000)[:, 0] * 9000).astype("<i2").tobytes())
    report = load(src, "en", root, manifest)
    assert [p.kind for p in report.errors] == ["duplicate"]
    assert "more than one file for prompt 'welcome'" in str(report.errors[0])


def test_zh_digits_can_be_loaded(tmp_path, root, manifest):
    src = tmp_path / "in"
    write_wav(src / "digits" / "wan.wav", tone(0.5, 16000), 16000)
    write_wav(src / "digits" / "hundreds.wav", tone(0.5, 16000), 16000)
    report = load(src, "zh", root, manifest)
    assert [str(p) for p in report.errors] == [
        "digits/hundreds.wav: not a file of the Mandarin digits pack (did you mean 'hundred'?)"]
    (src / "digits" / "hundreds.wav").unlink()
    report = load(src, "zh", root, manifest)
    assert report.swapped and report.loaded == ["digits/wan"]
    assert wav_info(root / "zh" / "digits" / "wan.wav")[:3] == (8000, 1, 2)
    assert len(list((root / "zh" / "digits").glob("*.wav"))) == len(ZH_DIGITS)


def test_unknown_language_and_empty_dir(tmp_path, root, manifest):
    (tmp_path / "empty").mkdir()
    assert "'fr' is not a language" in str(load(tmp_path / "empty", "fr", root, manifest)
                                           .errors[0])
    assert "no audio files" in str(load(tmp_path / "empty", "en", root, manifest).errors[0])


def test_dry_run_changes_nothing(tmp_path, root, manifest):
    src = tmp_path / "in"
    write_wav(src / "welcome.wav", tone(1.0, 48000), 48000)
    report = load(src, "en", root, manifest, dry_run=True)
    assert report.ok and not report.swapped and report.loaded == ["welcome"]
    assert not (root / "en").exists()


def test_reload_keeps_one_previous_set_and_version_changes(tmp_path, root, manifest):
    versions = []
    for n in range(4):
        src = tmp_path / f"in{n}"
        write_wav(src / "welcome.wav", tone(1.0, 8000, freq=300 + 50 * n), 8000)
        report = load(src, "en", root, manifest)
        assert report.swapped
        versions.append(report.version)
        assert current_set_version(root) == report.version
    assert len(set(versions)) == 4
    en_sets = [p for p in (root / ".sets").iterdir() if p.name.startswith("en-")]
    assert len(en_sets) == 2  # the live set and the one before it
    assert current_set_version(root) == current_set_version(root)


def test_active_root(tmp_path, manifest):
    assert active_root("", cwd=tmp_path) == DEFAULT_AUDIO_ROOT
    assert load_root("", cwd=tmp_path) == tmp_path / "var" / "prompts"
    assert active_root("/srv/prompts", cwd=tmp_path) == tmp_path / "/srv/prompts"
    assert active_root("custom", cwd=tmp_path) == tmp_path / "custom"
    src = tmp_path / "in"
    write_wav(src / "welcome.wav", tone(1.0, 8000), 8000)
    load(src, "en", load_root("", cwd=tmp_path), manifest)
    assert active_root("", cwd=tmp_path) == tmp_path / "var" / "prompts"


def test_install_layout(tmp_path, manifest):
    sounds = tmp_path / "sounds"
    report = install(DEFAULT_AUDIO_ROOT, sounds, manifest=manifest)
    # The manifest's ids, and the reward and courier names recorded beside them (6 demo
    # rewards, 4 configured couriers).
    names = 10
    assert report.installed == {"zh/loyalty": len(manifest.ids) + names,
                                "zh/digits": len(ZH_DIGITS),
                                "en/loyalty": len(manifest.ids) + names}
    assert (sounds / "zh" / "loyalty" / "reward_a01.wav").is_file()
    assert (sounds / "en" / "loyalty" / "courier_sf.sln").is_file()
    for lang in manifest.languages:
        for prompt_id in manifest.ids:
            for ext in (".wav", ".sln"):
                assert (sounds / lang / "loyalty" / f"{prompt_id}{ext}").is_file()
    for name in ZH_DIGITS:
        assert (sounds / "zh" / "digits" / f"{name}.wav").is_file()
        assert (sounds / "zh" / "digits" / f"{name}.sln").is_file()
    assert not (sounds / "en" / "digits").exists()
    # reinstalling swaps in a fresh copy and removes the old one
    first = os.readlink(sounds / "zh" / "loyalty")
    install(DEFAULT_AUDIO_ROOT, sounds, manifest=manifest)
    assert os.readlink(sounds / "zh" / "loyalty") != first
    assert not (sounds / "zh" / first).exists()
    assert len([p for p in (sounds / "zh").iterdir() if p.name.startswith(".loyalty-")]) == 1


def test_install_moves_a_foreign_directory_aside(tmp_path, manifest):
    sounds = tmp_path / "sounds"
    (sounds / "zh" / "digits").mkdir(parents=True)
    (sounds / "zh" / "digits" / "other.gsm").write_bytes(b"keep me")
    install(DEFAULT_AUDIO_ROOT, sounds, manifest=manifest)
    assert (sounds / "zh" / "digits").is_symlink()
    aside = [p for p in (sounds / "zh").iterdir() if p.name.startswith(".digits.before-")]
    assert len(aside) == 1 and (aside[0] / "other.gsm").read_bytes() == b"keep me"


def test_install_refuses_an_incomplete_root(tmp_path, manifest):
    root = tmp_path / "partial"
    (root / "zh").mkdir(parents=True)
    (root / "en").mkdir()
    with pytest.raises(PromptError) as info:
        install(root, tmp_path / "sounds", manifest=manifest)
    assert "nothing installed" in str(info.value)
    assert any("zh/welcome: no audio" in str(p) for p in info.value.problems)
    assert not (tmp_path / "sounds").exists()


def test_install_writes_sln_when_only_wav_is_there(tmp_path):
    root = tmp_path / "root"
    write_wav(root / "en" / "hello.wav", tone(1.0, 8000), 8000)
    install(root, tmp_path / "sounds")
    with wave.open(str(root / "en" / "hello.wav"), "rb") as w:
        payload = w.readframes(w.getnframes())
    assert (tmp_path / "sounds" / "en" / "loyalty" / "hello.sln").read_bytes() == payload


def test_check_reports_bad_format_and_mismatch(tmp_path, manifest):
    root = tmp_path / "root"
    shutil.copytree(DEFAULT_AUDIO_ROOT, root)
    write_wav(root / "en" / "welcome.wav", tone(1.0, 16000), 16000)
    (root / "en" / "goodbye.sln").write_bytes(b"\x00\x00" * 100)
    (root / "zh" / "digits" / "wan.wav").unlink()
    problems = {(p.kind, p.lang, p.prompt_id) for p in check(manifest, root, manifest.ids)}
    assert problems == {("bad-format", "en", "welcome"), ("mismatch", "en", "goodbye"),
                        ("missing-audio", "zh", "digits/wan")}


def test_library_does_not_import_twisted():
    code = ("import sys, prompts.store, prompts.manifest, prompts.cli; "
            "sys.exit(any(m.split('.')[0] == 'twisted' for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], cwd=store_mod.__file__.rsplit(
        "/prompts/", 1)[0]).returncode == 0


@pytest.mark.skipif(not sox_available(), reason="sox is not installed (optional)")
def test_other_formats_load_through_sox_when_present(tmp_path, root, manifest):
    wav = write_wav(tmp_path / "x.wav", tone(1.0, 22050, channels=2), 22050)
    src = tmp_path / "in"
    src.mkdir()
    subprocess.run(["sox", str(wav), str(src / "welcome.au")], check=True)
    report = load(src, "en", root, manifest)
    assert report.swapped, report.errors
    assert abs(wav_info(root / "en" / "welcome.wav")[3] / 8000 - 1.0) <= 0.02
