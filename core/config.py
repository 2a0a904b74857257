"""The TOML configuration (docs/configuration.md), validated with pydantic.

Errors name the file, the key path (``zones[0].signers[2]``) and the problem, and are
raised before anything is touched. ``${VAR}`` in any string value is replaced from the
environment; a missing variable is an error. Secrets are held as ``SecretStr`` so that
they never show up in a repr, a log line or an error message.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import dns.name
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from core.durations import parse_duration
from core.errors import ConfigError
from core.owner_ksk import OwnerKskConfig

DEFAULT_CONFIG = "multisigner.toml"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


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


def _signing_algorithms() -> tuple[Any, ...]:
    from dns.dnssectypes import Algorithm

    return (Algorithm.RSASHA256, Algorithm.RSASHA512, Algorithm.ECDSAP256SHA256,
            Algorithm.ECDSAP384SHA384, Algorithm.ED25519, Algorithm.ED448)


_SIGNING_ALGORITHMS = _signing_algorithms()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StateConfig(_Strict):
    # repr=False: a PostgreSQL URL carries the database password.
    url: str = Field(default="sqlite:///multisigner.db", repr=False)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        from core.errors import StateError
        from core.state_url import parse_url

        try:
            parse_url(value)
        except StateError as exc:  # the message never shows the password
            raise ValueError(str(exc)) from None
        return value


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ProviderConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    type: Literal["powerdns"]
    api_url: str
    api_key: SecretStr
    server_id: str = "localhost"
    nameservers: list[HostPort] = Field(min_length=1)
    ns_names: list[Fqdn] = Field(default_factory=list)
    timeout: Duration = timedelta(seconds=10)
    # http:// to anything but loopback sends the API key in clear: refused unless set.
    allow_plain_http: bool = False
    ca_file: Path | None = None  # CA bundle to trust for an https:// api_url (default: system)
    # HTTP(S)_PROXY / NO_PROXY / SSL_CERT_FILE from the environment apply only when set: a
    # stray proxy variable must not silently route the API key through another host.
    proxy_from_env: bool = False

    @field_validator("api_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} must start with http:// or https://")
        try:
            parts = urlsplit(value)
            _ = parts.port  # raises on a port that is no number or out of range
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a valid URL ({exc})") from None
        if not parts.hostname:
            raise ValueError(f"{value!r} names no host")
        return value.rstrip("/")

    @field_validator("api_key")
    @classmethod
    def _key(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("empty; set the provider's API key (sent as X-API-Key), e.g. "
                             "api_key = \"${P0_API_KEY}\"")
        return value

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value}: no such file (a PEM bundle of the CAs to trust for "
                             "api_url)")
        return value

    @model_validator(mode="after")
    def _plain_http(self) -> ProviderConfig:
        host = urlsplit(self.api_url).hostname or ""
        if (self.api_url.startswith("http://") and not _is_loopback(host)
                and not self.allow_plain_http):
            raise ValueError(
                f"api_url: {self.api_url} sends the API key unencrypted to {host}; use "
                "https:// (ca_file names the CA if it is private), or set allow_plain_http "
                "= true on this provider if the network path is trusted")
        return self


class KnotProviderConfig(_Strict):
    """``[[providers]] type = "knot"``: Knot DNS driven through keymgr/knotc (Model 1,
    offline KSK)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    type: Literal["knot"] = "knot"
    knot_config: Path  # passed as -c to keymgr and knotc
    command_prefix: list[str] = Field(default_factory=list)  # e.g. ["ssh", "dns1"]
    nameservers: list[HostPort] = Field(min_length=1)
    ns_names: list[Fqdn] = Field(default_factory=list)
    timeout: Duration = timedelta(seconds=10)  # per keymgr/knotc command
    # How the SKR reaches keymgr: "file" = a temp file (mode 0644: an SKR holds public keys
    # and signatures only) in ``skr_directory`` (default: the system temp dir), which must
    # be readable by the user keymgr runs as; "stdin" = piped to ``/dev/stdin`` (works
    # through an ``ssh`` prefix, where a local file would not exist).
    skr_transfer: Literal["file", "stdin"] = "file"
    skr_directory: Path | None = None


AnyProvider = Annotated[ProviderConfig | KnotProviderConfig, Field(discriminator="type")]


class ParentConfig(_Strict):
    type: Literal["cds-scan"] = "cds-scan"
    nameservers: list[HostPort] = Field(default_factory=list)


class PolicyConfig(_Strict):
    algorithm: str = "ECDSAP256SHA256"
    import_ksks: bool = True
    zsk_lifetime: Duration = timedelta(days=90)
    ksk_lifetime: Duration = timedelta(days=365)
    signature_validity: Duration = timedelta(days=14)
    signature_refresh: Duration = timedelta(days=7)
    propagation_delay: Duration = timedelta(minutes=5)
    safety_margin: Duration = timedelta(hours=1)
    # How long sync waits for every nameserver to serve a change, and for the parent DS.
    propagation_timeout: Duration = timedelta(minutes=10)
    parent_timeout: Duration = timedelta(hours=1)

    @property
    def algorithm_number(self) -> int:
        """The algorithm as its IANA number (validated at load, parsed once here)."""
        from core.algorithms import parse_algorithm

        return int(parse_algorithm(self.algorithm))

    @field_validator("zsk_lifetime", "ksk_lifetime", "signature_validity",
                     "propagation_timeout", "parent_timeout")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return value

    @model_validator(mode="after")
    def _refresh(self) -> PolicyConfig:
        # A signature re-signed only once it has expired leaves the zone bogus in between.
        if self.signature_refresh >= self.signature_validity:
            raise ValueError(
                f"signature_refresh: {_show(self.signature_refresh)} is not shorter than "
                f"signature_validity {_show(self.signature_validity)}; signatures must be "
                "refreshed before they expire")
        return self

    @field_validator("algorithm")
    @classmethod
    def _algorithm(cls, value: str) -> str:
        from dns.dnssectypes import Algorithm

        try:
            number = Algorithm.from_text(value.upper())
        except Exception:
            number = None
        if number is None or number not in _SIGNING_ALGORITHMS:
            raise ValueError(
                f"{value!r} is not a DNSSEC signing algorithm; use one of "
                + ", ".join(a.name for a in _SIGNING_ALGORITHMS)
            )
        return str(number.name)


class ZoneConfig(_Strict):
    name: Fqdn
    model: Literal[1, 2]
    signers: list[str] = Field(min_length=1)
    parent: ParentConfig = ParentConfig()
    policy: PolicyConfig = PolicyConfig()
    owner_ksk: OwnerKskConfig | None = None

    @field_validator("name")
    @classmethod
    def _not_root(cls, value: str) -> str:
        if value == ".":
            raise ValueError("the root zone '.' cannot be managed: it has no parent to "
                             "publish its DS, and multisigner manages delegated zones only")
        return value

    @model_validator(mode="after")
    def _owner_ksk(self) -> ZoneConfig:
        if self.model == 1 and self.owner_ksk is None:
            raise ValueError("owner_ksk: a model 1 zone needs [zones.owner_ksk] (where the "
                             "zone owner's KSK lives)")
        if self.model == 2 and self.owner_ksk is not None:
            raise ValueError("owner_ksk: only model 1 zones have an owner KSK; in model 2 "
                             "every signer holds its own")
        if self.owner_ksk is not None and self.owner_ksk.algorithm != self.policy.algorithm:
            raise ValueError(f"owner_ksk.algorithm {self.owner_ksk.algorithm} differs from "
                             f"policy.algorithm {self.policy.algorithm}; RFC 8901 sec. 4 needs "
                             "one algorithm")
        return self

    @field_validator("signers")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        dupes = sorted({s for s in value if value.count(s) > 1})
        if dupes:
            raise ValueError(f"signer listed twice: {', '.join(dupes)}")
        return value


class HistoryConfig(_Strict):
    """``[history]``: the secret that authenticates the history (exactly one of ``key``,
    usually ``"${MS_HISTORY_KEY}"``, and ``key_file``, a file only its owner may read).
    The file is read, and the key's length checked, by ``state.history_key``."""

    key: SecretStr | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> HistoryConfig:
        if (self.key is None) == (self.key_file is None):
            raise ValueError("set exactly one of key (e.g. \"${MS_HISTORY_KEY}\") "
                             "and key_file (a file of mode 0600)")
        return self


class Config(_Strict):
    state: StateConfig = StateConfig()
    history: HistoryConfig | None = None
    providers: list[AnyProvider] = Field(default_factory=list)
    zones: list[ZoneConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> Config:
        names = [p.name for p in self.providers]
        for name in sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"providers: name {name!r} is used by more than one provider")
        zones = [z.name for z in self.zones]
        for name in sorted({n for n in zones if zones.count(n) > 1}):
            raise ValueError(f"zones: {name} is configured more than once")
        for zi, zone in enumerate(self.zones):
            for si, signer in enumerate(zone.signers):
                if signer not in names:
                    raise ValueError(
                        f"zones[{zi}].signers[{si}]: no provider named {signer!r} "
                        f"(configured: {', '.join(names) or 'none'})"
                    )
        return self

    def provider(self, name: str) -> ProviderConfig | KnotProviderConfig:
        for provider in self.providers:
            if provider.name == name:
                return provider
        raise KeyError(name)

    def zone(self, name: str) -> ZoneConfig:
        wanted = _fqdn(name)
        for zone in self.zones:
            if zone.name == wanted:
                return zone
        raise KeyError(wanted)


def _expand(value: Any, path: str, missing: list[str]) -> Any:
    if isinstance(value, str):

        def repl(match: re.Match[str]) -> str:
            var = match.group(1)
            if var not in os.environ:
                missing.append(f"{path}: environment variable {var} is not set")
                return ""
            return os.environ[var]

        return _VAR.sub(repl, value)
    if isinstance(value, list):
        return [_expand(v, f"{path}[{i}]", missing) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _expand(v, f"{path}.{k}" if path else k, missing) for k, v in value.items()}
    return value


_UNION_TAGS = {"powerdns", "knot"}  # pydantic puts the discriminator's value in the path


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _UNION_TAGS or str(part).startswith("function-"):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def find_config_path(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get("MULTISIGNER_CONFIG")
    return Path(env) if env else Path(DEFAULT_CONFIG)


def load_config(path: Path) -> Config:
    """Read, expand and validate a config file; raise ConfigError naming file and key path."""
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such config file; pass --config PATH or set MULTISIGNER_CONFIG "
            f"(a lab config is written by 'multisigner lab up')"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    missing: list[str] = []
    expanded = _expand(raw, "", missing)
    if missing:
        raise ConfigError(f"{path}: " + "; ".join(missing))
    try:
        return Config.model_validate(expanded)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_input=False, include_url=False):
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check the spelling against docs/configuration.md)"
            where = _loc(err["loc"])
            problems.append(msg if where == "(top level)" and ": " in msg else f"{where}: {msg}")
        raise ConfigError(f"{path}: invalid configuration:\n  " + "\n  ".join(problems)) from None


def hostport(value: str) -> tuple[str, int]:
    """Public form of the host/port splitter for nameserver strings."""
    return _hostport(value)
