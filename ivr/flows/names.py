"""Rewards and couriers said by name: the recording ``reward_<code>`` / ``courier_<code>``
(``prompts.catalogue_prompts``) when the active set has it in the call's language, else a
fallback:

- a reward: its code spelled (SAY ALPHA), in either language;
- a courier: in English the courier spelled as the delivery names it; in Mandarin never
  letter by letter, but the generic phrase ``dlv_courier_generic`` ("sent by courier").

Whether a recording exists is answered from memory (``Voice.has_prompt``): nothing here
touches the disk on the reactor thread.
"""

from __future__ import annotations

from core.catalogue_names import courier_code
from core.config import CourierConfig
from ivr.flows.speech import Alpha, Piece, Voice
from prompts.catalogue_prompts import courier_prompt_id, reward_prompt_id

COURIER_GENERIC = "dlv_courier_generic"


def reward_name(voice: Voice, code: str) -> Piece:
    """The reward's recorded name, else its code spelled."""
    prompt_id = reward_prompt_id(code)
    if prompt_id is not None and voice.has_prompt(prompt_id):
        return prompt_id
    return Alpha(code)


def courier_pieces(voice: Voice, courier: str | None,
                   couriers: tuple[CourierConfig, ...]) -> list[Piece]:
    """``dlv_courier`` and the courier's recorded name; without a recording, in Mandarin the
    generic phrase alone, in English ``dlv_courier`` and the courier spelled."""
    code = courier_code(courier, couriers)
    if code is None:
        return []
    prompt_id = courier_prompt_id(code)
    if prompt_id is not None and voice.has_prompt(prompt_id):
        return ["dlv_courier", prompt_id]
    if voice.language == "en":
        return ["dlv_courier", Alpha(courier or code)]
    return [COURIER_GENERIC]
