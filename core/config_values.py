"""Reading configuration values: typed keys checked (or converted from environment strings),
times of day, and the loopback test. Errors are :class:`ConfigError`, naming the key."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import typing
from datetime import time

# The largest amount a points column holds (32-bit on PostgreSQL): no balance may exceed it.
POINTS_CEILING = 2**31 - 1


class ConfigError(ValueError):
    """A configuration problem, with a message naming the key."""


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def parse_range(value: str) -> tuple[time, time]:
    start, end = value.split("-")
    return parse_hhmm(start), parse_hhmm(end)


def coerce_value(key: str, value: typing.Any, kind: typing.Any) -> typing.Any:
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
    if typing.get_origin(kind) is dict:
        if isinstance(value, str):  # from the environment: "alice=token1,bob=token2"
            pairs = [v.partition("=") for v in value.split(",") if v.strip()]
            if any(not sep for _, sep, _ in pairs):
                raise ConfigError(f"{key}: expected name=value pairs separated by commas")
            value = {k.strip(): v.strip() for k, _, v in pairs}
        if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise ConfigError(f"{key}: expected a table of strings, got {value!r}")
        return dict(value)
    if typing.get_origin(kind) is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
        return tuple(value)
    raise ConfigError(f"{key}: unsupported type")  # pragma: no cover


def _fail() -> typing.NoReturn:
    raise ValueError


def build_section(name: str, cls: type, values: dict[str, typing.Any]) -> typing.Any:
    """An instance of the dataclass ``cls`` from a table, naming ``name.key`` on errors."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{name}.{key}: unknown key (known: {', '.join(sorted(known))})")
        kwargs[key] = coerce_value(f"{name}.{key}", value, hints[key])
    return cls(**kwargs)


def check_named_tokens(tokens: typing.Mapping[str, str], single: str) -> None:
    """``[ops] tokens`` (name -> token) beside the single ``ops.token``, which is named ops:
    names a log line can carry, tokens not trivially short, one token per name."""
    for name, token in tokens.items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", name):
            raise ConfigError(f"ops.tokens: {name!r} is not a name (letters, digits, . _ -)")
        if len(token) < 8:
            raise ConfigError(f"ops.tokens.{name}: at least 8 characters")
    if single and tokens.get("ops", single) != single:
        raise ConfigError("ops.tokens.ops: clashes with ops.token (which is named ops)")
    values = list(tokens.values()) + ([single] if single and "ops" not in tokens else [])
    if len(set(values)) != len(values):
        raise ConfigError("ops.tokens: two names share one token; give each its own")
