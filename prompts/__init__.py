"""Voice prompts: the manifest of prompt ids and texts, the audio sets, and the tools ops use.

- ``prompts/manifest.toml``: every prompt id the IVR may play, with its text per language.
- ``prompts/audio/<lang>/<id>.wav|.sln``: the committed default set (espeak-ng, 8 kHz mono
  16-bit), plus ``prompts/audio/zh/digits/`` for Asterisk's Mandarin SAY NUMBER / SAY DATETIME.
- ``prompts.store``: check and load sets (validate + convert + atomic swap);
  ``prompts.install`` lays a set out for Asterisk.
- ``prompts.say``: what Asterisk plays for zh numbers and dates, and the date formats below.

The IVR plays prompts as ``loyalty/<id>`` (relative to Asterisk's sounds dir and the channel
language) once ``loyalty prompts install SOUNDS_DIR`` has laid them out.
"""

from pathlib import Path

from prompts.say import (
    EN_DATETIME_FORMAT,
    ZH_DATETIME_FORMAT,
    ZH_DIGITS_FILES,
    date_format,
    zh_date_format,
)

PACKAGE_DIR = Path(__file__).resolve().parent
#: The committed default set (a complete prompt root).
DEFAULT_AUDIO_ROOT = PACKAGE_DIR / "audio"
DEFAULT_MANIFEST = PACKAGE_DIR / "manifest.toml"

__all__ = [
    "DEFAULT_AUDIO_ROOT",
    "DEFAULT_MANIFEST",
    "EN_DATETIME_FORMAT",
    "PACKAGE_DIR",
    "ZH_DATETIME_FORMAT",
    "ZH_DIGITS_FILES",
    "date_format",
    "zh_date_format",
]
