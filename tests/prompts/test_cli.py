"""``loyalty prompts check | load | install`` through argparse, as the main command wires it."""

from __future__ import annotations

import argparse
import types

from prompts import DEFAULT_AUDIO_ROOT
from prompts.cli import register

from .helpers import tone, write_wav


def run(argv, capsys):
    parser = argparse.ArgumentParser(prog="loyalty")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.func(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_check_committed_set_passes(capsys):
    code, out, _ = run(["prompts", "check", "--no-catalogue", "--root", str(DEFAULT_AUDIO_ROOT)],
                         capsys)
    assert code == 0
    assert "OK: every prompt has audio in every language" in out


def test_check_uses_the_ivr_ids_and_fails_on_unknown(capsys, monkeypatch):
    monkeypatch.setattr("ivr.prompt_ids.USED",
                        frozenset({"welcome", "menu_main", "made_up_prompt"}))
    code, out, _ = run(["prompts", "check", "--no-catalogue", "--root", str(DEFAULT_AUDIO_ROOT)],
                         capsys)
    assert code == 1
    assert "7 from ivr.prompt_ids.USED and the configured tiers" in out  # 3 + 4 tiers
    assert "'made_up_prompt', which the manifest does not define" in out


def test_check_uses_the_ids_the_flows_declare(capsys):
    from ivr.flows.expiry_warning import PROMPT_IDS as WARNING_IDS
    from ivr.flows.hotline import PROMPT_IDS as HOTLINE_IDS

    code, out, _ = run(["prompts", "check", "--no-catalogue", "--root", str(DEFAULT_AUDIO_ROOT)],
                         capsys)
    assert code == 0
    assert f"{len(HOTLINE_IDS | WARNING_IDS)} from ivr.prompt_ids.USED" in out


def test_load_then_install(tmp_path, capsys):
    src = tmp_path / "rec"
    write_wav(src / "welcome.wav", tone(1.2, 44100, channels=2), 44100)
    root = tmp_path / "var" / "prompts"
    code, out, err = run(["prompts", "load", str(src), "--lang", "en", "--root", str(root)],
                         capsys)
    assert code == 0, err
    assert "[1/1] welcome.wav: ok" in err
    assert "loaded 1 prompt(s)" in out
    sounds = tmp_path / "sounds"
    code, out, err = run(["prompts", "install", str(sounds), "--root", str(root)], capsys)
    assert code == 0, err
    assert (sounds / "en" / "loyalty" / "welcome.wav").read_bytes() == (
        root / "en" / "welcome.wav").read_bytes()
    assert (sounds / "zh" / "digits" / "wan.sln").is_file()


def test_refused_load_exits_1_and_says_why(tmp_path, capsys):
    src = tmp_path / "rec"
    src.mkdir()
    (src / "welcome.wav").write_bytes(b"not audio at all")
    code, _, err = run(["prompts", "load", str(src), "--lang", "zh", "--root",
                        str(tmp_path / "root")], capsys)
    assert code == 1
    assert "REFUSED: 1 problem(s); the zh prompts were not changed" in err
    assert "welcome.wav: cannot be read: not a WAV file" in err


def test_install_incomplete_root_exits_1(tmp_path, capsys):
    (tmp_path / "root" / "zh").mkdir(parents=True)
    code, _, err = run(["prompts", "install", str(tmp_path / "s"), "--root",
                        str(tmp_path / "root")], capsys)
    assert code == 1
    assert "not a complete prompt set; nothing installed" in err


def test_bad_manifest_exits_2(tmp_path, capsys):
    bad = tmp_path / "m.toml"
    bad.write_text('version = "1"\nlanguages = ["zh"]\n[prompts.x]\n', encoding="utf-8")
    code, _, err = run(["prompts", "check", "--manifest", str(bad)], capsys)
    assert code == 2
    assert "x: no zh text" in err


def test_handlers_accept_the_main_commands_context(tmp_path, capsys):
    """core.cli passes a context with .args and .config instead of the Namespace."""
    parser = argparse.ArgumentParser(prog="loyalty")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["prompts", "check", "--no-catalogue"])
    config = types.SimpleNamespace(prompts=types.SimpleNamespace(
        dir=str(DEFAULT_AUDIO_ROOT), sounds_subdir="loyalty"))
    ctx = types.SimpleNamespace(args=args, config=config)
    assert args.func(ctx) == 0
    assert f"prompt set: {DEFAULT_AUDIO_ROOT}" in capsys.readouterr().out


def test_check_wants_a_prompt_for_every_configured_tier(capsys, monkeypatch, tmp_path):
    from pathlib import Path

    monkeypatch.setattr("ivr.prompt_ids.USED", frozenset({"welcome"}))
    config = tmp_path / "loyalty.toml"
    default = Path(__file__).resolve().parents[2] / "config" / "loyalty.toml"
    config.write_text(default.read_text(encoding="utf-8") + '''
[[tiers]]
code = "platinum"
name_zh = "铂金会员"
name_en = "Platinum"
threshold = 30000
''', encoding="utf-8")
    monkeypatch.setenv("LOYALTY_CONFIG", str(config))
    code, out, _ = run(["prompts", "check", "--no-catalogue", "--root", str(DEFAULT_AUDIO_ROOT)],
                         capsys)
    assert code == 1
    assert "'tier_platinum', which the manifest does not define" in out
    assert "tier_gold" not in out  # the default tiers have their prompts
