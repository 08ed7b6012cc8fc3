"""Configuration: one TOML file, overridable key by key from the environment.

The schema is the dataclasses below; anything else in the file or in a ``LOYALTY_*`` variable is
an error naming the key, raised before the server starts.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import typing
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "config" / "loyalty.toml"


class ConfigError(ValueError):
    """A configuration problem, with a message naming the key."""


@dataclass(frozen=True)
class TierConfig:
    code: str
    name_zh: str
    name_en: str
    threshold: int
    priority: bool = False


@dataclass(frozen=True)
class ProgrammeConfig:
    timezone: str = "Asia/Shanghai"
    default_language: str = "zh"
    validity_years: int = 2
    refund_expired_lots: str = "fresh"
    pin_max_tries: int = 3
    pin_lock_minutes: int = 30
    qualifying_sources: tuple[str, ...] = ("bill", "tenure", "ontime", "partner")
    tier_validity_months: int = 12
    confirmation_code_minutes: int = 10

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = "sqlite:///var/loyalty.sqlite3"
    pool_size: int = 4
    busy_timeout_ms: int = 5000


@dataclass(frozen=True)
class FastAGIConfig:
    host: str = "127.0.0.1"
    port: int = 4573
    max_calls: int = 3000
    idle_timeout_s: float = 60
    digit_timeout_ms: int = 5000
    max_retries: int = 3
    agents_open: str = "08:00-21:00"
    history_page: int = 3


@dataclass(frozen=True)
class SMPPConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 2775
    system_id: str = "loyalty"
    password: str = "secret"
    system_type: str = ""
    address_range: str = ""
    source_addr: str = "10086"
    source_addr_ton: int = 3
    source_addr_npi: int = 0
    window: int = 10
    max_submit_rate: float = 100
    response_timeout_s: float = 10
    enquire_link_s: float = 30
    dead_link_s: float = 90
    reconnect_min_s: float = 1
    reconnect_max_s: float = 60
    mo_rate_limit: int = 10
    mo_dedupe_window_s: float = 120
    outbox_lease_s: float = 30
    max_parts: int = 3
    mo_max_attempts: int = 4
    mo_retry_base_s: float = 2
    outbox_max_attempts: int = 12


@dataclass(frozen=True)
class OpsConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    token: str = ""


@dataclass(frozen=True)
class JobsConfig:
    enabled: bool = True
    expiry_warning_at: str = "10:00"
    expire_points_at: str = "00:10"
    auto_redeem_day: int = 1
    auto_redeem_at: str = "09:00"
    tier_review_at: str = "02:00"
    warning_days: int = 30
    final_warning_days: int = 7
    quiet_start: str = "21:00"
    quiet_end: str = "08:00"


@dataclass(frozen=True)
class AMIConfig:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 5038
    username: str = "loyalty"
    secret: str = "secret"
    channel_template: str = "Local/{msisdn}@from-loyalty"
    fastagi_url: str = "agi://127.0.0.1:4573/expiry-warning"
    caller_id: str = "10086"
    max_concurrent_calls: int = 10
    calling_hours: str = "09:00-20:00"
    retries: int = 2
    retry_after_s: float = 1800
    answer_timeout_s: float = 30


@dataclass(frozen=True)
class PromptsConfig:
    dir: str = ""
    sounds_subdir: str = "loyalty"


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "info"
    file: str = "-"  # "-": standard output (the journal under systemd)


@dataclass(frozen=True)
class Config:
    programme: ProgrammeConfig = field(default_factory=ProgrammeConfig)
    tiers: tuple[TierConfig, ...] = ()
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    fastagi: FastAGIConfig = field(default_factory=FastAGIConfig)
    smpp: SMPPConfig = field(default_factory=SMPPConfig)
    ops: OpsConfig = field(default_factory=OpsConfig)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    ami: AMIConfig = field(default_factory=AMIConfig)
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def replace(self, section: str, **values: typing.Any) -> Config:
        """A copy with some keys of one section changed (tests and tools)."""
        return dataclasses.replace(
            self, **{section: dataclasses.replace(getattr(self, section), **values)}
        )


_SECTIONS = {f.name: f for f in dataclasses.fields(Config) if f.name != "tiers"}
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_RANGE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$")


def parse_hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def parse_range(value: str) -> tuple[time, time]:
    start, end = value.split("-")
    return parse_hhmm(start), parse_hhmm(end)


def _coerce(key: str, value: typing.Any, kind: typing.Any) -> typing.Any:
    """Check (or, for strings from the environment, convert) one value against its type."""
    from_env = isinstance(value, str) and kind is not str
    if kind is bool:
        if from_env:
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if kind is int:
        try:
            if isinstance(value, bool):
                raise ValueError
            return int(value) if from_env or isinstance(value, int) else _fail()
        except (ValueError, TypeError):
            raise ConfigError(f"{key}: expected a whole number, got {value!r}") from None
    if kind is float:
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (ValueError, TypeError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if typing.get_origin(kind) is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
        return tuple(value)
    raise ConfigError(f"{key}: unsupported type")  # pragma: no cover


def _fail() -> typing.NoReturn:
    raise ValueError


def _build_section(name: str, cls: type, values: dict[str, typing.Any]) -> typing.Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{name}.{key}: unknown key (known: {', '.join(sorted(known))})")
        kwargs[key] = _coerce(f"{name}.{key}", value, hints[key])
    return cls(**kwargs)


def _validate(config: Config) -> None:
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
    if config.smpp.window < 1 or config.smpp.max_submit_rate <= 0:
        raise ConfigError("smpp.window and smpp.max_submit_rate: must be positive")
    if config.smpp.mo_dedupe_window_s <= 0 or config.smpp.outbox_lease_s <= 0:
        raise ConfigError("smpp.mo_dedupe_window_s and smpp.outbox_lease_s: must be positive")
    if config.smpp.mo_max_attempts < 1 or config.smpp.outbox_max_attempts < 1:
        raise ConfigError("smpp.mo_max_attempts and smpp.outbox_max_attempts: at least 1")
    if config.logging.level not in ("debug", "info", "warn", "error"):
        raise ConfigError("logging.level: one of debug, info, warn, error")


def load_config(path: str | os.PathLike | None = None,
                environ: typing.Mapping[str, str] | None = None) -> Config:
    """Read the file (``LOYALTY_CONFIG`` or the default), apply overrides, validate."""
    environ = os.environ if environ is None else environ
    path = Path(path or environ.get("LOYALTY_CONFIG") or DEFAULT_PATH)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None

    for var, value in environ.items():
        if not var.startswith("LOYALTY_") or var in ("LOYALTY_CONFIG",) or var.startswith(
            "LOYALTY_TEST_"
        ):
            continue
        rest = var[len("LOYALTY_"):].lower()
        section = next((s for s in _SECTIONS if rest.startswith(s + "_")), None)
        if section is None:
            raise ConfigError(
                f"{var}: no config section matches (sections: {', '.join(_SECTIONS)})")
        raw.setdefault(section, {})[rest[len(section) + 1:]] = value

    kwargs: dict[str, typing.Any] = {}
    for name, values in raw.items():
        if name == "tiers":
            if not isinstance(values, list):
                raise ConfigError("tiers: expected [[tiers]] tables")
            tiers = []
            for i, table in enumerate(values):
                if not isinstance(table, dict):
                    raise ConfigError(f"tiers[{i}]: expected a table")
                for req in ("code", "name_zh", "name_en", "threshold"):
                    if req not in table:
                        raise ConfigError(f"tiers[{i}].{req}: missing")
                tiers.append(_build_section(f"tiers[{i}]", TierConfig, table))
            kwargs["tiers"] = tuple(tiers)
            continue
        if name not in _SECTIONS:
            raise ConfigError(f"{name}: unknown section (known: tiers, {', '.join(_SECTIONS)})")
        if not isinstance(values, dict):
            raise ConfigError(f"{name}: expected a table")
        kwargs[name] = _build_section(name, _SECTIONS[name].default_factory, values)
    config = Config(**kwargs)
    _validate(config)
    return config
