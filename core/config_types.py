"""Value types of the configuration: durations, host[:port] strings, domain names, and
the strict base model every table uses (unknown keys are errors, values are frozen)."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from typing import Annotated, Any

import dns.name
from pydantic import BaseModel, BeforeValidator, ConfigDict

from core.durations import parse_duration


def _duration(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a duration must be a string like '5m' or a number of seconds")
    try:
        if isinstance(value, str):
            result = parse_duration(value)
        elif isinstance(value, int | float):
            result = timedelta(seconds=value)
        else:
            return value
    except OverflowError:
        raise ValueError(f"duration {value!r} is too large") from None
    if result < timedelta(0):
        raise ValueError(f"duration {value!r} is negative")
    return result


Duration = Annotated[timedelta, BeforeValidator(_duration)]


def _show(value: timedelta) -> str:
    """A duration as the config would write it (``7d``, ``90s``)."""
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _hostport(value: str, default_port: int = 53) -> tuple[str, int]:
    """Split ``host`` / ``host:port`` / ``[v6]:port``."""
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if value.count(":") == 1:
        host, port = value.split(":")
        return host, int(port)
    return value, default_port


def _check_hostport(value: str) -> str:
    try:
        _, port = _hostport(value)
    except ValueError:
        raise ValueError(f"{value!r} is not 'host' or 'host:port'") from None
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range in {value!r}")
    return value


HostPort = Annotated[
    str, BeforeValidator(lambda v: _check_hostport(v) if isinstance(v, str) else v)
]


def _fqdn(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        name = dns.name.from_text(value)
    except Exception as exc:
        raise ValueError(f"{value!r} is not a valid domain name ({exc})") from None
    return name.to_text()


Fqdn = Annotated[str, BeforeValidator(_fqdn)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def hostport(value: str) -> tuple[str, int]:
    """Public form of the host/port splitter for nameserver strings."""
    return _hostport(value)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine (where plain http:// exposes no credential)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
