"""Every prompt id the IVR flows play (``loyalty prompts check`` reads ``USED``).

The hotline's ids are listed here by hand and a test plays every menu path and checks that
nothing outside ``HOTLINE`` is ever played, and that every id here is in the manifest.
Ids built at run time: ``tier_<code>`` (the default ladder's codes; a configured tier without
a prompt is simply not named), ``hist_kind_<ledger kind>``, ``dlv_status_<delivery status>``.
"""

from __future__ import annotations

import importlib

HOTLINE: frozenset[str] = frozenset({
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
    "redeem_not_available",
    # 5 gift delivery
    "dlv_latest", "dlv_none", "dlv_order", "dlv_status", "dlv_status_pending",
    "dlv_status_shipped", "dlv_status_in_transit", "dlv_status_delivered",
    "dlv_status_returned", "dlv_status_cancelled", "dlv_courier", "dlv_tracking", "dlv_next",
})

# The outbound expiry-warning call (ivr.flows.expiry_warning, written separately): its own
# PROMPT_IDS when it declares them, else the manifest's warn_* pieces it is built from.
EXPIRY_WARNING_DEFAULT: frozenset[str] = frozenset({
    "warn_intro", "warn_you_have", "warn_expire_on", "warn_options", "unit_points",
})


def _expiry_warning_ids() -> frozenset[str]:
    try:
        module = importlib.import_module("ivr.flows.expiry_warning")
    except Exception:  # absent or broken: the prompt check must still run
        return EXPIRY_WARNING_DEFAULT
    declared = getattr(module, "PROMPT_IDS", None) or getattr(module, "USED", None)
    return frozenset(declared) if declared else EXPIRY_WARNING_DEFAULT


EXPIRY_WARNING: frozenset[str] = _expiry_warning_ids()

USED: frozenset[str] = HOTLINE | EXPIRY_WARNING
