"""Which package may import which: the core without Twisted, the channels without the harness,
and plain imports between the project's own modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "ivr", "sms", "ops", "prompts", "harness")


def sources(*packages: str) -> list[Path]:
    return sorted(path for package in packages for path in (ROOT / package).rglob("*.py")
                  if "migrations" not in path.parts)


def imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` or ``from ... import`` in the file names (at any depth)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def top(module: str) -> str:
    return module.split(".")[0]


def test_the_core_imports_no_twisted():
    offenders = {str(path.relative_to(ROOT)): sorted(m for m in imported_modules(path)
                                                     if top(m) == "twisted")
                 for path in sources("core")}
    assert {path: names for path, names in offenders.items() if names} == {}


def test_importing_every_core_module_loads_no_twisted():
    modules = [".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
               for path in sources("core")]
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules)
            + "sys.exit(sorted(m for m in sys.modules if m.split('.')[0] == 'twisted')[:3] "
              "or None)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr


def test_only_the_cli_imports_the_harness():
    users = {str(path.relative_to(ROOT)) for path in sources("core", "ivr", "sms", "ops")
             if any(top(m) == "harness" for m in imported_modules(path))}
    assert users == {"core/cli.py"}
    assert {m for m in imported_modules(ROOT / "core" / "cli.py")
            if top(m) == "harness"} == {"harness.cli"}


def test_project_modules_import_each_other_plainly():
    tricks = {str(path.relative_to(ROOT)) for path in sources(*PACKAGES)
              if imported_modules(path) & {"importlib", "inspect"}}
    assert tricks == set()


def test_only_the_store_imports_sqlalchemy_in_the_core():
    users = {str(path.relative_to(ROOT)) for path in sources("core")
             if "store" not in path.relative_to(ROOT).parts
             and any(top(m) == "sqlalchemy" for m in imported_modules(path))}
    assert users == set()
