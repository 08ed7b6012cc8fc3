"""Every prompt id the IVR flows play (``loyalty prompts check`` reads ``USED``).

Each flow module declares its own ``PROMPT_IDS``. A test plays every hotline menu path and
checks that nothing outside ``HOTLINE`` is ever played, and that every id here is in the
manifest.
"""

from __future__ import annotations

from ivr.flows.expiry_warning import PROMPT_IDS as EXPIRY_WARNING
from ivr.flows.hotline import PROMPT_IDS as HOTLINE

USED: frozenset[str] = HOTLINE | EXPIRY_WARNING

__all__ = ["EXPIRY_WARNING", "HOTLINE", "USED"]
