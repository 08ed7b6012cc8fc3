"""The ``loyalty`` FastAGI script: the self-service hotline.

Answer; language from ``agi_language`` (zh* / en*, else the programme default); the caller is
the member whose number the caller id is, else keys in number and PIN; then the member's
language preference; welcome; main menu:

    1 tier   2 balance   3 history   4 redeem   5 gift delivery
    6 make-up claims and complaints (``ivr.flows.tickets``)   7 preferences
    9 other language (stored as the preference)   0 agent   * repeat

Every answer offers an SMS copy (1). Wrong keys and silence are retried with more help, then
the call goes to an agent: ``LOYALTY_NEXT=agent``, ``LOYALTY_TIER=<code>``,
``LOYALTY_PRIORITY=1|0`` and the AGI ends (the dialplan queues the call); outside
``fastagi.agents_open`` the caller hears a polite goodbye and ``LOYALTY_NEXT=closed``.

Database reads overlap the audio: the caller-id lookup runs while ANSWER does, the main
menu's answers are read while the welcome and menu play (``ivr.flows.lookahead``).

A hang-up raises ``ChannelHungUp`` from the next AGI command; it is not caught here, so the flow
stops at once and the server records the call as hung up (no traceback).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from core.accounts import set_language
from core.clock import SecondsClock, utc_now_from
from core.config import Config
from core.metrics import Metrics
from ivr.agi_channel import AGIChannel
from ivr.agi_wire import ChannelHungUp
from ivr.flows import answers
from ivr.flows.auth import authenticate, by_caller_id
from ivr.flows.calls import CallBook
from ivr.flows.lookahead import Pending
from ivr.flows.menu import MAIN_MENU_KEYS, REASON_ERROR, Call, EndCall, Settings, ToAgent
from ivr.flows.preferences import PROMPT_IDS as PREFERENCE_PROMPT_IDS
from ivr.flows.preferences import preferences_menu
from ivr.flows.redeem import redeem_menu
from ivr.flows.speech import NO_KEYS
from ivr.flows.tickets import PROMPT_IDS as TICKET_PROMPT_IDS
from ivr.flows.tickets import tickets_menu
from ivr.flows.trouble import call_failed
from ops.dbservice import DatabaseService
from prompts.presence import PromptPresence

log = Logger()

#: Every prompt id the hotline plays (``ivr.prompt_ids`` / ``loyalty prompts check`` read it).
#: Ids built at run time: ``tier_<code>`` (the default ladder's codes; a configured tier
#: without a prompt is simply not named), ``hist_kind_<ledger kind>``,
#: ``dlv_status_<delivery status>``. Reward and courier names (``reward_<code>``,
#: ``courier_<code>``, ``prompts.catalogue_prompts``) are not listed: they follow the catalogue.
PROMPT_IDS: frozenset[str] = frozenset({
    # call start, language, goodbye
    "welcome", "lang_switched", "goodbye",
    # identification and PIN
    "auth_enter_number", "auth_not_member", "auth_enter_pin", "auth_wrong_pin",
    "auth_pin_locked", "auth_pin_not_set",
    # main menu, input errors, agents
    "menu_main", "err_invalid_key", "err_no_input", "err_help", "err_too_many", "err_system",
    "agent_transfer", "agent_closed",
    # shared pieces
    "unit_points", "sms_offer", "sms_sent",
    # 1 tier
    "tier_is", "tier_standard", "tier_silver", "tier_gold", "tier_diamond", "tier_valid_until",
    "tier_need", "tier_to_reach", "tier_top",
    # 2 balance
    "bal_is", "bal_of_which", "bal_expire_on", "bal_none_expiring",
    # 3 history
    "hist_latest", "hist_none", "hist_more", "hist_no_more", "hist_kind_credit",
    "hist_kind_debit", "hist_kind_expiry", "hist_kind_adjustment", "hist_kind_penalty",
    "hist_kind_refund", "hist_kind_makeup",
    # 4 redeem
    "redeem_categories", "redeem_category_empty", "redeem_item", "redeem_costs",
    "redeem_more", "redeem_choose", "redeem_enter_pin", "redeem_confirm_intro",
    "redeem_confirm_for", "redeem_confirm_keys", "redeem_success", "redeem_sms_sent",
    "redeem_cancelled", "redeem_insufficient", "redeem_out_of_stock", "redeem_limit_reached",
    "redeem_not_available", "redeem_line_barred", "redeem_address_needed",
    "redeem_gift_address", "redeem_accepted", "redeem_applying_sms",
    # 5 gift delivery
    "dlv_latest", "dlv_none", "dlv_order", "dlv_status", "dlv_status_pending",
    "dlv_status_shipped", "dlv_status_in_transit", "dlv_status_delivered",
    "dlv_status_returned", "dlv_status_cancelled", "dlv_courier", "dlv_courier_generic",
    "dlv_tracking", "dlv_next",
}) | TICKET_PROMPT_IDS  # 6 claims and complaints
PROMPT_IDS = PROMPT_IDS | PREFERENCE_PROMPT_IDS | {"menu_prefs"}  # main-menu 7

#: Keys that cut the welcome short and count as the first choice (* = repeat: not yet heard).
TYPE_AHEAD_KEYS = MAIN_MENU_KEYS.replace("*", "")
OTHER_LANGUAGE = {"zh": "en", "en": "zh"}

Answer = Callable[[Call], Awaitable["str | None"]]


async def _redeem(call: Call) -> None:
    await redeem_menu(call)
    return None


async def _preferences(call: Call) -> None:
    await preferences_menu(call)
    call.forget()  # the language or the warnings may have changed
    return None


ANSWERS: dict[str, Answer] = {
    "1": answers.tier,
    "2": answers.points_balance,
    "3": answers.points_history,
    "4": _redeem,
    "5": answers.delivery,
    "6": tickets_menu,
    "7": _preferences,
}


class Hotline:
    """The hotline flow: ``await hotline(channel)`` serves one call.

    ``db`` is a ``ops.dbservice.DatabaseService`` (anything with ``run(use_case, *args)``
    returning a Deferred). ``book`` is shared with the server's call recorder; ``now`` defaults
    to ``clock``'s time (one of the two is required). ``prompts`` says which recordings the
    active set has (reward and courier names are played only when recorded); the server sets
    it, and without it names are spelled."""

    def __init__(self, db: DatabaseService, settings: Settings, *, book: CallBook | None = None,
                 metrics: Metrics | None = None, now: Callable[[], datetime] | None = None,
                 clock: SecondsClock | None = None) -> None:
        if now is None:
            if clock is None:
                raise TypeError("Hotline needs a clock (or a now function)")
            now = utc_now_from(clock)
        self.db = db
        self.settings = settings
        self.book = book if book is not None else CallBook()
        self.metrics = metrics
        self.now = now
        self.prompts: PromptPresence | None = None

    @classmethod
    def from_config(cls, config: Config, db: DatabaseService, **kwargs: Any) -> Hotline:
        return cls(db, Settings.from_config(config), **kwargs)

    async def __call__(self, channel: AGIChannel) -> None:
        info = self.book.get(channel)
        owned = info is None
        if info is None:
            info = self.book.open(channel, self.now())
        call = Call(channel, info, self.settings, self.db, self.now, self.metrics,
                    prompts=self.prompts)
        try:
            await self._serve(call)
        finally:
            if owned:
                self.book.close(channel)

    async def _serve(self, call: Call) -> None:
        lookup = Pending(Deferred.fromCoroutine(by_caller_id(call)))  # while ANSWER runs
        typed_ahead: str | None = None
        await call.channel.answer()
        try:
            member = await lookup.get()
            if member is None:
                await call.voice.set_language(call.language)
                await call.voice.play("welcome", escape=NO_KEYS)
                member = await authenticate(call)
                call.look_ahead()
                await self._prefer(call, member.language)
            else:
                call.msisdn = member.msisdn
                call.look_ahead()  # read while the welcome and the menu play
                await self._prefer(call, member.language, always=True)
                # A caller who knows the menu may key the choice during the welcome.
                typed_ahead = await call.voice.play("welcome", escape=TYPE_AHEAD_KEYS)
            call.info.msisdn = member.msisdn
            await self.main_menu(call, typed_ahead)
        except ToAgent as why:
            await call.to_agent(why.reason)
        except EndCall:
            pass
        except ChannelHungUp:
            raise
        except Exception:
            # The database is down or a bug: tell the caller, log it, hand over to a person.
            call_failed(call.info, "the hotline")
            call.info.detail("error")
            await call.voice.play("err_system", escape=NO_KEYS)
            await call.to_agent(REASON_ERROR)

    @staticmethod
    async def _prefer(call: Call, language: str, *, always: bool = False) -> None:
        """Switch to the member's preferred language (``always``: set it even when equal)."""
        if language not in OTHER_LANGUAGE:
            language = call.language
        if always or language != call.language:
            await call.voice.set_language(language)

    async def main_menu(self, call: Call, pending: str | None = None) -> None:
        """The main menu; ``pending`` is a key already pressed (during the welcome or an
        answer's SMS offer), taken as the first choice."""
        while True:
            if pending is not None and pending in MAIN_MENU_KEYS:
                key = pending
            else:
                key = await call.choose(["menu_main", "menu_prefs"], MAIN_MENU_KEYS)
            pending = None
            if key == "*":
                continue
            call.info.step(key)
            if key == "0":
                raise ToAgent("key 0")
            if key == "9":
                await self.switch_language(call)
                continue
            pending = await self.answer(call, ANSWERS[key])

    async def answer(self, call: Call, handler: Answer) -> str | None:
        """Run one answer; a refusal or failure of the core is told, then back to the menu."""
        try:
            return await handler(call)
        except (ChannelHungUp, ToAgent, EndCall):
            raise
        except Exception:
            call_failed(call.info, f"menu {call.info.menu_path}")
            call.info.detail("error")
            await call.voice.play("err_system", escape=NO_KEYS)
            return None

    async def switch_language(self, call: Call) -> None:
        language = OTHER_LANGUAGE.get(call.language, "zh")
        await call.voice.set_language(language)
        try:
            await call.run(set_language, call.msisdn, language, call.now())
        except Exception:
            call_failed(call.info, "storing the language preference")
        await call.voice.play("lang_switched", escape=NO_KEYS)


def hotline_flow(config: Config, db: DatabaseService, *, book: CallBook,
                 metrics: Metrics | None, clock: SecondsClock) -> Hotline:
    """The flow of the ``loyalty`` script (``ivr.server.SCRIPTS``)."""
    return Hotline.from_config(config, db, book=book, metrics=metrics, clock=clock)
