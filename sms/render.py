"""Every SMS text comes from a Jinja2 template per language: sms/templates/<lang>/<name>.j2."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

TEMPLATES = Path(__file__).resolve().parent / "templates"
LANGUAGES = ("zh", "en")


@lru_cache(maxsize=1)
def environment() -> Environment:
    # Templates ship with the code and are rendered on the reactor thread (the outbox sender):
    # no auto_reload, so a render never stats a file; a template change needs a restart.
    return Environment(loader=FileSystemLoader(str(TEMPLATES)), undefined=StrictUndefined,
                       autoescape=False, keep_trailing_newline=False, trim_blocks=True,
                       lstrip_blocks=True, auto_reload=False)


def render(template: str, language: str, params: dict[str, Any] | None = None) -> str:
    """The text of one message, whitespace-trimmed (templates may wrap lines for reading)."""
    lang = language if language in LANGUAGES else LANGUAGES[0]
    text = environment().get_template(f"{lang}/{template}.j2").render(**(params or {}))
    return "\n".join(line.strip() for line in text.strip().splitlines() if line.strip())


def template_names(language: str) -> list[str]:
    return sorted(p.stem for p in (TEMPLATES / language).glob("*.j2"))
