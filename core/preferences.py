"""A member's own choices: expiry warnings on or off and by SMS or voice, the language, and the
monthly automatic redemption, with the SMS sign-up confirmed by a one-time code like ``DH``."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.accounts import require_member
from core.domain import (
    AUTO_SIGNUP,
    LANGUAGES,
    InvalidInput,
    Member,
    Order,
    SecretCheck,
    UnknownReward,
)
from core.ports import UnitOfWork
from core.redemption import Found, _code_hash, find_confirmation, redeem_confirmed
from core.rules import ProgrammeRules
from core.service_desk import cancel_auto_redemption, subscribe_auto_redemption

WARNING_CHANNELS = ("sms", "voice")


@dataclass(frozen=True)
class Preferences:
    """What the member chose, as the IVR's preferences menu reads it back."""

    msisdn: str
    language: str
    warnings_on: bool
    warning_channel: str
    auto_reward_code: str | None


def preferences(uow: UnitOfWork, rules: ProgrammeRules, msisdn: str,
                now: datetime) -> Preferences:
    member = require_member(uow, rules, msisdn)
    return Preferences(member.msisdn, member.language, not member.warning_opt_out,
                       member.warning_channel, uow.jobs.auto_redemption_of(member.msisdn))


def set_preferences(uow: UnitOfWork, rules: ProgrammeRules, msisdn: str, now: datetime, *,
                    warnings: bool | None = None, warning_channel: str | None = None,
                    language: str | None = None, auto_redeem: str | None = None) -> Preferences:
    """Change what is given (``auto_redeem``: a reward code, or ``"off"``); returns the
    member's preferences after. Idempotent."""
    member = require_member(uow, rules, msisdn, for_update=True)
    fields: dict[str, object] = {}
    if warnings is not None:
        fields["warning_opt_out"] = not warnings
    if warning_channel is not None:
        if warning_channel not in WARNING_CHANNELS:
            raise InvalidInput("warning channel must be sms or voice")
        fields["warning_channel"] = warning_channel
    if language is not None:
        if language not in LANGUAGES:
            raise InvalidInput(f"language must be one of {', '.join(LANGUAGES)}")
        fields["language"] = language
    if fields:
        uow.members.update_member(member.msisdn, **fields)
    if auto_redeem is not None:
        if auto_redeem.lower() == "off":
            cancel_auto_redemption(uow, rules, member.msisdn, now)
        else:
            subscribe_auto_redemption(uow, rules, member.msisdn, auto_redeem.upper(), now)
    return preferences(uow, rules, member.msisdn, now)


def start_auto_signup(uow: UnitOfWork, rules: ProgrammeRules, msisdn: str, reward_code: str,
                      now: datetime) -> tuple[str, str, datetime]:
    """Issue the 6-digit code that confirms a monthly automatic redemption of
    ``reward_code``. Returns (reward code, code, expiry instant); only a hash is stored."""
    member = require_member(uow, rules, msisdn)
    reward = uow.orders.get_reward(reward_code.upper())
    if reward is None:
        raise UnknownReward(reward_code)
    code = f"{secrets.randbelow(1_000_000):06d}"
    expires_at = now + timedelta(minutes=rules.programme.confirmation_code_minutes)
    uow.orders.add_confirmation(msisdn=member.msisdn, code_hash=_code_hash(member.msisdn, code),
                                reward_code=reward.code, price=0, channel=AUTO_SIGNUP,
                                now=now, expires_at=expires_at)
    return reward.code, code, expires_at


def confirm_auto_signup(uow: UnitOfWork, rules: ProgrammeRules, msisdn: str, code: str,
                        now: datetime) -> str | SecretCheck | None:
    """If ``code`` is one of the member's sign-up codes: sign her up and return the reward
    code (the same code again returns it again). None if it is not a sign-up code (it may be
    a redemption's); a lock in force is returned as its ``SecretCheck``."""
    member = require_member(uow, rules, msisdn, for_update=True)
    return _signed_up(uow, rules, member, find_confirmation(uow, member, code, now), now)


def confirm_code(uow: UnitOfWork, rules: ProgrammeRules, msisdn: str, code: str, channel: str,
                 now: datetime) -> str | Order | SecretCheck:
    """An SMS confirmation code, the member locked and the code looked up once: a sign-up's
    (``confirm_auto_signup``: the reward code) or else a redemption's
    (``confirm_redemption``: the order, or the refusal)."""
    member = require_member(uow, rules, msisdn, for_update=True)
    found = find_confirmation(uow, member, code, now)
    signed_up = _signed_up(uow, rules, member, found, now)
    if isinstance(signed_up, str):
        return signed_up
    return redeem_confirmed(uow, rules, member, found, channel, now)


def _signed_up(uow: UnitOfWork, rules: ProgrammeRules, member: Member, found: Found,
               now: datetime) -> str | SecretCheck | None:
    locked, pending, used = found
    if locked is not None:
        return locked
    if pending is None:
        return used.reward_code if used is not None and used.channel == AUTO_SIGNUP else None
    if pending.channel != AUTO_SIGNUP:
        return None
    uow.orders.use_confirmation(pending.id, now)
    subscribe_auto_redemption(uow, rules, member.msisdn, pending.reward_code, now)
    return pending.reward_code


__all__ = ["AUTO_SIGNUP", "Preferences", "cancel_auto_redemption", "confirm_auto_signup",
           "confirm_code",
           "preferences", "set_preferences", "start_auto_signup",
           "subscribe_auto_redemption"]
