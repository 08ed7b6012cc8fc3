"""The checks a configuration must pass before the server starts: each refusal is one
``ConfigError`` naming the key (``core.config.load_config`` runs them)."""

from __future__ import annotations

import re
import socket
import sys
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.config_values import (
    POINTS_CEILING,
    ConfigError,
    check_named_tokens,
    is_loopback_host,
)

if TYPE_CHECKING:
    from core.config import (
        Config,
        FastAGIConfig,
        FulfilmentConfig,
        IPNetwork,
        NumberingConfig,
    )

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_RANGE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$")


def validate(config: Config) -> None:
    p = config.programme
    try:
        ZoneInfo(p.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"programme.timezone: unknown time zone {p.timezone!r}") from None
    if p.default_language not in ("zh", "en"):
        raise ConfigError("programme.default_language: must be 'zh' or 'en'")
    if p.refund_expired_lots not in ("fresh", "forfeit"):
        raise ConfigError("programme.refund_expired_lots: must be 'fresh' or 'forfeit'")
    for key in ("validity_years", "pin_max_tries", "pin_lock_minutes", "tier_validity_months",
                "confirmation_code_minutes"):
        if getattr(p, key) < 1:
            raise ConfigError(f"programme.{key}: must be at least 1")
    if p.max_points_per_row < 1 or p.max_balance < p.max_points_per_row:
        raise ConfigError("programme.max_points_per_row and programme.max_balance: must be "
                          "positive, with max_balance at least max_points_per_row")
    if p.max_balance > POINTS_CEILING:
        raise ConfigError(f"programme.max_balance: at most {POINTS_CEILING} (what a points "
                          "column holds)")
    if not config.tiers:
        raise ConfigError("tiers: at least one tier is needed")
    thresholds = [t.threshold for t in config.tiers]
    if thresholds[0] != 0 or thresholds != sorted(set(thresholds)):
        raise ConfigError("tiers: thresholds must start at 0 and strictly increase")
    if len({t.code for t in config.tiers}) != len(config.tiers):
        raise ConfigError("tiers: codes must be unique")
    if not config.database.url.startswith(("sqlite", "postgresql")):
        raise ConfigError("database.url: only sqlite:/// and postgresql+psycopg:// are supported")
    for section, key in (("fastagi", "port"), ("smpp", "port"), ("ops", "port"), ("ami", "port")):
        port = getattr(getattr(config, section), key)
        if not 0 <= port <= 65535:
            raise ConfigError(f"{section}.{key}: {port} is not a TCP port")
    for key in ("expiry_warning_at", "expire_points_at", "auto_redeem_at", "tier_review_at",
                "quiet_start", "quiet_end"):
        if not _HHMM.match(getattr(config.jobs, key)):
            raise ConfigError(f"jobs.{key}: expected HH:MM, got {getattr(config.jobs, key)!r}")
    if not 1 <= config.jobs.auto_redeem_day <= 28:
        raise ConfigError("jobs.auto_redeem_day: must be 1 to 28")
    for section, key in (("fastagi", "agents_open"), ("ami", "calling_hours")):
        if not _RANGE.match(getattr(getattr(config, section), key)):
            raise ConfigError(f"{section}.{key}: expected HH:MM-HH:MM")
    for key in ("context", "exten"):
        if not re.fullmatch(r"[A-Za-z0-9_+.-]{1,79}", getattr(config.ami, key)):
            raise ConfigError(f"ami.{key}: a dialplan name (letters, digits, - _ + .), got "
                              f"{getattr(config.ami, key)!r}")
    if config.ami.priority < 1:
        raise ConfigError("ami.priority: must be at least 1")
    if config.smpp.window < 1 or config.smpp.max_submit_rate <= 0:
        raise ConfigError("smpp.window and smpp.max_submit_rate: must be positive")
    if config.smpp.mo_dedupe_window_s <= 0 or config.smpp.outbox_lease_s <= 0:
        raise ConfigError("smpp.mo_dedupe_window_s and smpp.outbox_lease_s: must be positive")
    if config.smpp.mo_max_attempts < 1 or config.smpp.outbox_max_attempts < 1:
        raise ConfigError("smpp.mo_max_attempts and smpp.outbox_max_attempts: at least 1")
    if not 0 <= config.smpp.round_wait_ms <= 1000 or config.smpp.round_items < 1:
        raise ConfigError("smpp.round_wait_ms: 0 to 1000; smpp.round_items: at least 1")
    check_named_tokens(config.ops.tokens, config.ops.token)
    _validate_fulfilment(config.fulfilment)
    if config.logging.level not in ("debug", "info", "warn", "error"):
        raise ConfigError("logging.level: one of debug, info, warn, error")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{0,40}", config.process.name):
        raise ConfigError(f"process.name: letters, digits, - _ . (at most 40), got "
                          f"{config.process.name!r}")
    if config.fastagi.reuse_port and not reuse_port_supported():
        raise ConfigError(f"fastagi.reuse_port: needs Linux (SO_REUSEPORT spreading connections "
                          f"over processes); this is {sys.platform}: give each process its own "
                          "fastagi.port instead")
    _validate_numbering(config.numbering)
    check_fastagi_access(config.fastagi)


def reuse_port_supported() -> bool:
    """SO_REUSEPORT balances connections over the listening sockets only on Linux (BSDs and
    macOS give them all to the last one bound)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def _validate_fulfilment(f: FulfilmentConfig) -> None:
    if f.url and not re.match(r"^https?://[^/\s]+", f.url):
        raise ConfigError("fulfilment.url: an http:// or https:// URL, or empty for none")
    if f.auth_header and not re.fullmatch(r"[A-Za-z0-9-]+:\s*\S.*", f.auth_header):
        # The value is a secret: the message never shows it.
        raise ConfigError("fulfilment.auth_header: expected 'Name: value'")
    if f.timeout_s <= 0 or f.backoff_base_s <= 0 or f.backoff_cap_s < f.backoff_base_s \
            or f.poll_interval_s <= 0:
        raise ConfigError("fulfilment.timeout_s, backoff_base_s, poll_interval_s: positive; "
                          "backoff_cap_s at least backoff_base_s")
    if f.max_attempts < 1 or f.batch_size < 1:
        raise ConfigError("fulfilment.max_attempts and fulfilment.batch_size: at least 1")
    if f.lease_s <= f.timeout_s:
        raise ConfigError("fulfilment.lease_s: must be longer than fulfilment.timeout_s (a "
                          "POST still running must not be claimed by another process)")


def _validate_numbering(numbering: NumberingConfig) -> None:
    if not re.fullmatch(r"[1-9][0-9]{0,2}", numbering.country_code):
        raise ConfigError(f"numbering.country_code: 1 to 3 digits without + or 00, got "
                          f"{numbering.country_code!r}")
    try:
        pattern = re.compile(numbering.national_pattern)
    except re.error as exc:
        raise ConfigError(f"numbering.national_pattern: not a regular expression ({exc})") \
            from None
    if pattern.fullmatch(""):
        raise ConfigError("numbering.national_pattern: matches the empty string")


def check_fastagi_access(fastagi: FastAGIConfig) -> tuple[IPNetwork, ...]:
    """The networks FastAGI peers may come from; ConfigError when a listed entry is bad, or
    when the port listens beyond loopback while nobody chose who may connect."""
    networks = fastagi.allowed_networks()
    if not fastagi.allowed_peers and not is_loopback_host(fastagi.host):
        raise ConfigError(f"fastagi.allowed_peers: required when fastagi.host ({fastagi.host!r})"
                          " is not a loopback address (list the Asterisk servers' addresses)")
    return networks
