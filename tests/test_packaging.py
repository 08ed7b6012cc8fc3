"""A wheel install carries what the server reads at run time: every migration, every
template, the prompt manifest (an editable install hides a missing one)."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_wheel_holds_the_migrations_and_templates(tmp_path):
    # Built from a copy of what git tracks: setuptools writes build/ beside the sources.
    tracked = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                              "--exclude-standard"], cwd=ROOT, check=True,
                             capture_output=True).stdout.decode().split("\0")
    source = tmp_path / "src"
    for name in filter(None, tracked):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "-w", str(tmp_path), str(source)],
                   check=True, capture_output=True)
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = [p.relative_to(ROOT).as_posix() for pattern in (
        "core/store/migrations/versions/0*.py", "core/store/migrations/env.py",
        "ops/templates/**/*.j2", "sms/templates/**/*.j2", "prompts/manifest.toml")
        for p in ROOT.glob(pattern)]
    assert len(wanted) > 20
    assert sorted(set(wanted) - names) == []
