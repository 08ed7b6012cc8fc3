"""Installing a prompt root for Asterisk: ``<SOUNDS_DIR>/<lang>/<subdir>`` and
``<SOUNDS_DIR>/zh/digits`` become symlinks to fresh directories, swapped atomically per
language."""

from __future__ import annotations

import os
from pathlib import Path

from prompts.catalogue_prompts import is_name_prompt_id
from prompts.manifest import Manifest
from prompts.set_dirs import DIGITS, install_dir
from prompts.store import InstallReport, PromptError, check, digits_names


def install(prompt_root: str | os.PathLike, sounds_dir: str | os.PathLike, *,
            manifest: Manifest | None = None, subdir: str = "loyalty",
            force: bool = False) -> InstallReport:
    """Lay a prompt root out for Asterisk: ``<sounds>/<lang>/<subdir>/<id>.wav|.sln`` and
    ``<sounds>/zh/digits/<name>.wav|.sln``; each directory swapped atomically.

    With a ``manifest``, the root is checked first and an incomplete root is refused (unless
    ``force``), and only the manifest's ids and the reward and courier names
    (``prompts.catalogue_prompts``) are copied.
    """
    root = Path(prompt_root)
    sounds = Path(sounds_dir)
    if manifest is not None:
        problems = check(manifest, root, ())
        if problems and not force:
            raise PromptError(f"{root} is not a complete prompt set; nothing installed",
                              problems)
        languages = list(manifest.languages)
    else:
        languages = sorted(p.name for p in root.iterdir()
                           if p.is_dir() and not p.name.startswith("."))
    if not languages:
        raise PromptError(f"{root} has no language directories; nothing installed")
    report = InstallReport(sounds_dir=sounds)
    for lang in languages:
        lang_src = root / lang
        if not lang_src.is_dir():
            continue
        if manifest is not None:
            files = [lang_src / f"{i}.wav" for i in manifest.ids]
            files = [f for f in files if f.is_file()]
            # Reward and courier names are not in the manifest: they go with the set.
            files += sorted(f for f in lang_src.glob("*.wav") if is_name_prompt_id(f.stem))
        else:
            files = sorted(lang_src.glob("*.wav"))
        report.installed[f"{lang}/{subdir}"] = install_dir(files, sounds / lang, subdir)
        digits_src = lang_src / DIGITS
        if digits_src.is_dir():
            wanted = digits_names(lang) or tuple(p.stem for p in digits_src.glob("*.wav"))
            dfiles = [digits_src / f"{d}.wav" for d in wanted]
            dfiles = [f for f in dfiles if f.is_file()]
            report.installed[f"{lang}/{DIGITS}"] = install_dir(dfiles, sounds / lang, DIGITS)
    return report
