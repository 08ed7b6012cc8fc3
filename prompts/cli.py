"""``loyalty prompts check | load | install``: the ops commands for voice prompts.

The main ``loyalty`` command calls ``register(subparsers)``; each handler takes the parsed
arguments (an ``argparse.Namespace``, or ``core.cli``'s context object whose ``.args`` is one
and whose ``.config`` is the loaded configuration) and returns the exit code: 0 fine,
1 problems found / load refused, 2 bad manifest or configuration.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.config import Config, ConfigError, load_config
from prompts.catalogue_prompts import missing_name_prompts
from prompts.install import install
from prompts.manifest import Manifest, ManifestError, load_manifest
from prompts.store import (
    PromptError,
    active_root,
    check,
    current_set_version,
    load,
    load_root,
)


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "prompts", help="check, load and install the voice prompts",
        description="Voice prompts: check the active set, load new recordings, install them "
                    "into Asterisk's sounds directory.")
    sub = parser.add_subparsers(dest="prompts_command", metavar="COMMAND")
    sub.required = True

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--root", type=Path, default=None,
                       help="prompt root to use (default: the active one from the config)")
        p.add_argument("--manifest", type=Path, default=None,
                       help="prompt manifest (default: the one shipped in prompts/)")

    p_check = sub.add_parser(
        "check", help="report prompt ids without audio, unknown ids, unreadable files",
        description="Check the active prompt set against the manifest and the ids the IVR "
                    "uses (ivr.prompt_ids.USED, from the flows), and that every active reward "
                    "and every courier has its name recorded (reward_<code>, courier_<code>; "
                    "read from the configured database). Exit 1 on any problem.")
    p_check.add_argument("--no-catalogue", action="store_true",
                         help="skip the reward and courier names (which need the database)")
    common(p_check)
    p_check.set_defaults(func=cmd_check)

    p_load = sub.add_parser(
        "load", help="validate, convert and atomically install recordings for one language",
        description="Load a directory of recordings named <prompt id>.<ext> (WAV at any rate "
                    "and channel count, .sln, .ulaw...; mp3/ogg/flac need sox), plus "
                    "digits/<name>.<ext> for zh. Every file is checked (readable, 0.2-60 s, "
                    "not silent, not clipped) and converted to 8 kHz mono 16-bit. Only if all "
                    "pass does the language switch to the new set; ids not supplied keep "
                    "their audio.")
    p_load.add_argument("dir", type=Path, help="directory with the recordings")
    p_load.add_argument("--lang", required=True, help="language of the recordings (zh, en)")
    p_load.add_argument("--dry-run", action="store_true",
                        help="validate and convert only; change nothing")
    p_load.add_argument("--ignore-extra", action="store_true",
                        help="skip files whose name matches no prompt id instead of refusing")
    p_load.add_argument("--quiet", action="store_true", help="no per-file progress")
    common(p_load)
    p_load.set_defaults(func=cmd_load)

    p_install = sub.add_parser(
        "install", help="copy the active set into Asterisk's sounds directory",
        description="Lay the active set out as SOUNDS_DIR/<lang>/<subdir>/<id>.wav|.sln and "
                    "SOUNDS_DIR/zh/digits/..., each directory swapped atomically.")
    p_install.add_argument("sounds_dir", type=Path, metavar="SOUNDS_DIR",
                           help="Asterisk's sounds directory, e.g. /usr/share/asterisk/sounds")
    p_install.add_argument("--subdir", default=None,
                           help="directory under each language (default: [prompts] "
                                "sounds_subdir, 'loyalty')")
    p_install.add_argument("--force", action="store_true",
                           help="install even if the set is incomplete")
    common(p_install)
    p_install.set_defaults(func=cmd_install)
    return parser


# --------------------------------------------------------------------------- helpers


def _err(*parts: object) -> None:
    print(*parts, file=sys.stderr)


class _ConfigProblem(Exception):
    pass


class _PathProblem(Exception):
    """A path given on the command line that cannot be what it was given as."""


def _require_directory(path: Path | None, what: str, *, may_be_missing: bool = False) -> None:
    if path is None or (may_be_missing and not path.exists()):
        return
    if not path.exists():
        raise _PathProblem(f"{what} {path}: no such directory")
    if not path.is_dir():
        raise _PathProblem(f"{what} {path}: not a directory")


def _unwrap(arg) -> tuple[argparse.Namespace, object | None]:
    """(parsed arguments, context or None) from what the main command passes."""
    if isinstance(arg, argparse.Namespace):
        return arg, None
    return arg.args, arg


def _config(args: argparse.Namespace, ctx: object | None) -> Config:
    try:
        if ctx is not None and hasattr(ctx, "config"):
            return ctx.config
        return load_config(getattr(args, "config", None))
    except ConfigError as exc:
        raise _ConfigProblem(str(exc)) from None


def _prompts_config(args: argparse.Namespace, ctx: object | None
                    ) -> tuple[str, str, list[str]]:
    """([prompts] dir, [prompts] sounds_subdir, the ``tier_<code>`` id of every configured
    tier) from the configuration."""
    config = _config(args, ctx)
    tier_ids = [f"tier_{tier.code}" for tier in getattr(config, "tiers", ())]
    return config.prompts.dir, config.prompts.sounds_subdir, tier_ids


@dataclass(frozen=True)
class _Setup:
    manifest: Manifest
    root: Path  # --root, else the default root for the command
    subdir: str  # [prompts] sounds_subdir
    tier_ids: list[str]  # the ``tier_<code>`` prompt of every configured tier


def _setup(args: argparse.Namespace, ctx: object | None,
           default_root: Callable[[str], Path]) -> _Setup:
    """The manifest, the prompt root (``default_root([prompts] dir)`` unless ``--root``) and
    the configured prompt settings."""
    manifest = load_manifest(args.manifest)
    prompts_dir, subdir, tier_ids = _prompts_config(args, ctx)
    return _Setup(manifest, args.root or default_root(prompts_dir), subdir, tier_ids)


def used_prompt_ids() -> list[str]:
    """The ids the IVR flows play (``ivr.prompt_ids.USED``, read from the flows)."""
    # Imported here: the flows bring in Twisted, which this module's library use does not need.
    from ivr import prompt_ids

    return list(prompt_ids.USED)


def _command(body: Callable[[argparse.Namespace, object | None], int]) -> Callable[[object], int]:
    """A handler from ``body(args, ctx)``: unwraps what the main command passes, and turns the
    expected failures into messages on stderr and exit codes."""

    @functools.wraps(body)
    def handler(arg: object) -> int:
        args, ctx = _unwrap(arg)
        try:
            return body(args, ctx)
        except ManifestError as exc:
            _err(f"prompt manifest {exc.path} is not valid:")
            for problem in exc.problems:
                _err(f"  - {problem}")
            return 2
        except PromptError as exc:
            _err(str(exc))
            for problem in exc.problems:
                _err(f"  - {problem}")
            return 1
        except _ConfigProblem as exc:
            _err(f"configuration: {exc}")
            return 2
        except _PathProblem as exc:
            _err(str(exc))
            return 1

    return handler


# --------------------------------------------------------------------------- commands


@_command
def cmd_check(args: argparse.Namespace, ctx: object | None) -> int:
    _require_directory(args.root, "--root")
    setup = _setup(args, ctx, active_root)
    manifest, root = setup.manifest, setup.root
    # The IVR names each configured tier by its prompt.
    used = used_prompt_ids() + setup.tier_ids
    where = "ivr.prompt_ids.USED and the configured tiers"
    problems = check(manifest, root, used)
    print(f"prompt set: {root} (version {current_set_version(root)})")
    print(f"manifest:   {manifest.path} (version {manifest.version}, {len(manifest)} ids, "
          f"languages {', '.join(manifest.languages)})")
    print(f"used ids:   {len(set(used))} from {where}")
    lines = [str(p) for p in problems]
    if not args.no_catalogue:
        lines += _name_problems(args, ctx, manifest, root)
    if not lines:
        print("OK: every prompt has audio in every language")
        return 0
    for line in lines:
        print(f"  - {line}")
    print(f"{len(lines)} problem(s)")
    return 1


def _missing_sqlite_file(url: str) -> str | None:
    """The file of a SQLite url when it does not exist, else None."""
    if not url.startswith("sqlite") or ":///" not in url:
        return None
    path = url.split(":///", 1)[1].split("?", 1)[0]
    if not path or path == ":memory:" or Path(path).exists():
        return None
    return path


def _name_problems(args: argparse.Namespace, ctx: object | None, manifest: Manifest,
                   root: Path) -> list[str]:
    """The active rewards' and the couriers' names without a recording; one line instead when
    the database cannot be read."""
    # Imported here: only this check needs the database.
    from core.catalogue_names import spoken_codes
    from core.clock import WallClock, utc_now
    from core.rules import ProgrammeRules
    from core.store import DatabaseUnreachable, SchemaBehind, Store
    from core.store.engine import shown_url

    config = _config(args, ctx)
    missing_file = _missing_sqlite_file(config.database.url)
    if missing_file is not None:  # opening it would create an empty database
        return [f"cannot read the active rewards and couriers: no database file {missing_file} "
                "(run `loyalty db upgrade`, or --no-catalogue)"]
    store = Store(config.database.url)
    try:
        store.check_schema()
        with store.unit_of_work(write=False) as uow:
            codes = spoken_codes(uow, ProgrammeRules.from_config(config),
                                 utc_now(WallClock()))
    except (DatabaseUnreachable, SchemaBehind) as exc:
        return [f"cannot read the active rewards and couriers: {exc}"]
    finally:
        store.dispose()
    print(f"names:      {len(codes.reward_codes)} active reward(s), "
          f"{len(codes.courier_codes)} courier(s) from {shown_url(config.database.url)}")
    return missing_name_prompts(root, manifest.languages, codes.reward_codes,
                                codes.courier_codes)


@_command
def cmd_load(args: argparse.Namespace, ctx: object | None) -> int:
    _require_directory(args.dir, "recordings directory")
    _require_directory(args.root, "--root", may_be_missing=True)
    setup = _setup(args, ctx, load_root)
    root = setup.root

    def progress(n: int, total: int, name: str, outcome: str) -> None:
        if not args.quiet:
            _err(f"[{n}/{total}] {name}: {outcome}")

    report = load(args.dir, args.lang, root, setup.manifest, allow_extra=args.ignore_extra,
                  dry_run=args.dry_run, progress=progress)
    for name in report.ignored:
        _err(f"ignored (not an audio file): {name}")
    if report.extra and args.ignore_extra:
        _err(f"skipped, no such prompt id: {', '.join(report.extra)}")
    if not report.ok:
        _err(f"REFUSED: {len(report.errors)} problem(s); the {args.lang} prompts were "
             "not changed")
        for problem in report.errors:
            _err(f"  - {problem}")
        return 1
    if args.dry_run:
        print(f"dry run: {len(report.loaded)} file(s) would load into {root}/{args.lang}; "
              f"{len(report.kept)} id(s) would keep their current audio")
        return 0
    print(f"loaded {len(report.loaded)} prompt(s) into {root}/{args.lang} "
          f"(set version {report.version})")
    if report.kept:
        shown = ", ".join(report.kept[:8]) + (", ..." if len(report.kept) > 8 else "")
        print(f"kept the current audio of {len(report.kept)} id(s) not supplied: {shown}")
    if report.missing:
        print(f"WARNING: still no audio for: {', '.join(report.missing)}")
    print("next: 'loyalty prompts install SOUNDS_DIR' to hand the set to Asterisk")
    return 0


@_command
def cmd_install(args: argparse.Namespace, ctx: object | None) -> int:
    _require_directory(args.root, "--root")
    # A new sounds directory is made, but never inside a file.
    _require_directory(args.sounds_dir, "SOUNDS_DIR", may_be_missing=True)
    setup = _setup(args, ctx, active_root)
    report = install(setup.root, args.sounds_dir, manifest=setup.manifest,
                     subdir=args.subdir or setup.subdir, force=args.force)
    for where, count in report.installed.items():
        print(f"installed {count} sound(s) in {args.sounds_dir / where}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m prompts.cli check``) for when ``loyalty`` is not wired."""
    parser = argparse.ArgumentParser(prog="prompts")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["prompts", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
