"""Configuration: one TOML file, overridable key by key from the environment.

The schema is the dataclasses below; anything else in the file or in a ``LOYALTY_*`` variable is
an error naming the key, raised before the server starts.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from core.config_checks import validate
from core.config_values import (
    ConfigError,
    build_section,
)
from core.config_values import parse_hhmm as parse_hhmm  # re-exported: importers use core.config
from core.config_values import parse_range as parse_range

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "config" / "loyalty.toml"


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK_PEERS = ("127.0.0.0/8", "::1")


@dataclass(frozen=True)
class TierConfig:
    code: str
    name_zh: str
    name_en: str
    threshold: int
    priority: bool = False


@dataclass(frozen=True)
class CourierConfig:
    """One courier of ``[couriers]``: its code (as deliveries name it, e.g. ``SF``) and the
    names members are told. The IVR says it with the recorded prompt ``courier_<code>``."""

    code: str
    zh: str
    en: str

    def names(self) -> tuple[str, ...]:
        return (self.code, self.zh, self.en)

    def name(self, language: str) -> str:
        return self.zh if language == "zh" else self.en


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
    max_points_per_row: int = 1_000_000
    max_balance: int = 100_000_000

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
    # Voice notes of make-up claims and complaints: Asterisk writes them (a relative name is
    # under its sounds directory, so the hotline can play them back); the ticket keeps the path.
    recordings_dir: str = "loyalty/tickets"
    max_recording_s: int = 120
    # Addresses or CIDRs that may connect; empty: loopback only (LOOPBACK_PEERS). Required
    # when ``host`` is not loopback: whoever reaches the port can claim any caller id.
    allowed_peers: tuple[str, ...] = ()
    # Several processes on one port (SO_REUSEPORT, Linux): the kernel spreads new connections
    # over them. Every process on the port must set it.
    reuse_port: bool = False

    def allowed_networks(self) -> tuple[IPNetwork, ...]:
        """The networks a FastAGI peer must come from (ConfigError naming the key if bad)."""
        networks = []
        for entry in self.allowed_peers or LOOPBACK_PEERS:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                raise ConfigError(f"fastagi.allowed_peers: {entry!r} is not an IP address or "
                                  "CIDR") from None
        return tuple(networks)


@dataclass(frozen=True)
class NumberingConfig:
    """Which subscriber numbers the programme serves: the country calling code and the pattern
    of a national number (after the country code or trunk prefix is taken off)."""

    country_code: str = "86"
    national_pattern: str = "1[3-9][0-9]{9}"


@dataclass(frozen=True)
class SMPPLinkConfig:
    """The ``[smpp]`` keys the ESME session itself reads (see ``sms.session_settings``)."""

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


@dataclass(frozen=True)
class SMPPConfig(SMPPLinkConfig):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 2775
    mo_rate_limit: int = 10
    mo_dedupe_window_s: float = 120
    outbox_lease_s: float = 30
    max_parts: int = 3
    mo_max_attempts: int = 4
    mo_retry_base_s: float = 2
    outbox_max_attempts: int = 12
    round_wait_ms: float = 0
    round_items: int = 16


@dataclass(frozen=True)
class OpsConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    token: str = ""  # the single, unnamed token of earlier releases: its holder is "ops"
    # Named tokens (name -> token): the console logs every action with the name.
    tokens: dict[str, str] = field(default_factory=dict)

    def named_tokens(self) -> dict[str, str]:
        """Every accepted token by the name actions are logged under."""
        named = dict(self.tokens)
        if self.token:
            named.setdefault("ops", self.token)
        return named


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
    # Where the answered warning call enters the dialplan (config/extensions.conf).
    context: str = "loyalty-warning"
    exten: str = "s"
    priority: int = 1
    # No longer used (warning calls enter the dialplan at context/exten/priority); still
    # accepted so a configuration written for an earlier release starts, with a warning.
    fastagi_url: str = ""
    caller_id: str = "10086"
    max_concurrent_calls: int = 10
    calling_hours: str = "09:00-20:00"
    retries: int = 2
    retry_after_s: float = 1800
    answer_timeout_s: float = 30


@dataclass(frozen=True)
class FulfilmentConfig:
    """The provisioning API that applies service and voucher rewards (docs/fulfilment.md)."""

    url: str = ""  # empty: no API; orders wait for the CSV fallback
    auth_header: str = ""  # "Name: value", sent with every POST; never logged
    timeout_s: float = 10
    max_attempts: int = 8
    backoff_base_s: float = 30
    backoff_cap_s: float = 3600
    # A claimed order whose process died is claimed again this long after the claim; longer
    # than a POST may take, so a live POST is never doubled by another process.
    lease_s: float = 60
    batch_size: int = 20
    poll_interval_s: float = 5

    def header(self) -> tuple[str, str] | None:
        """``auth_header`` split into (name, value); None when unset."""
        if not self.auth_header:
            return None
        name, _, value = self.auth_header.partition(":")
        return name.strip(), value.strip()


@dataclass(frozen=True)
class PromptsConfig:
    dir: str = ""
    sounds_subdir: str = "loyalty"


@dataclass(frozen=True)
class ProcessConfig:
    """Who this process is among several on one database (``LOYALTY_PROCESS_NAME``): its log
    lines carry the name, its metrics a ``loyalty_process_info{name=...}`` series, its job runs
    the name as owner. Empty: one process, unnamed."""

    name: str = ""


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "info"
    file: str = "-"  # "-": standard output (the journal under systemd)


@dataclass(frozen=True)
class Config:
    programme: ProgrammeConfig = field(default_factory=ProgrammeConfig)
    tiers: tuple[TierConfig, ...] = ()
    couriers: tuple[CourierConfig, ...] = ()
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    fastagi: FastAGIConfig = field(default_factory=FastAGIConfig)
    numbering: NumberingConfig = field(default_factory=NumberingConfig)
    smpp: SMPPConfig = field(default_factory=SMPPConfig)
    ops: OpsConfig = field(default_factory=OpsConfig)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    ami: AMIConfig = field(default_factory=AMIConfig)
    fulfilment: FulfilmentConfig = field(default_factory=FulfilmentConfig)
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    process: ProcessConfig = field(default_factory=ProcessConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def replace(self, section: str, **values: typing.Any) -> Config:
        """A copy with some keys of one section changed (tests and tools)."""
        return dataclasses.replace(
            self, **{section: dataclasses.replace(getattr(self, section), **values)}
        )


_SECTIONS = {f.name: f for f in dataclasses.fields(Config)
             if f.name not in ("tiers", "couriers")}
_COURIER_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def parse_couriers(values: object) -> tuple[CourierConfig, ...]:
    """``[couriers]``: ``SF = { zh = "顺丰速运", en = "SF Express" }``, one line a courier."""
    if not isinstance(values, dict):
        raise ConfigError("couriers: expected a table of CODE = { zh = \"...\", en = \"...\" }")
    out = []
    for code, names in values.items():
        if not _COURIER_CODE.match(code):
            raise ConfigError(f"couriers.{code}: a code is letters and digits (e.g. SF, EMS)")
        if not isinstance(names, dict) or set(names) != {"zh", "en"} or not all(
                isinstance(v, str) and v.strip() for v in names.values()):
            raise ConfigError(f"couriers.{code}: expected {{ zh = \"...\", en = \"...\" }}")
        out.append(CourierConfig(code.upper(), names["zh"].strip(), names["en"].strip()))
    if len({c.code for c in out}) != len(out):
        raise ConfigError("couriers: a code is listed twice")
    return tuple(out)


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
    except OSError as exc:  # a directory, no read permission
        raise ConfigError(f"config file {path}: {(exc.strerror or str(exc)).lower()}") from None

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
                tiers.append(build_section(f"tiers[{i}]", TierConfig, table))
            kwargs["tiers"] = tuple(tiers)
            continue
        if name == "couriers":
            kwargs["couriers"] = parse_couriers(values)
            continue
        if name not in _SECTIONS:
            raise ConfigError(f"{name}: unknown section (known: tiers, couriers, "
                              f"{', '.join(_SECTIONS)})")
        if not isinstance(values, dict):
            raise ConfigError(f"{name}: expected a table")
        kwargs[name] = build_section(name, _SECTIONS[name].default_factory, values)
    config = Config(**kwargs)
    validate(config)
    return config
