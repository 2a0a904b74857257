"""The TOML configuration (docs/configuration.md), validated with pydantic.

Errors name the file, the key path (``zones[0].signers[2]``) and the problem, and are
raised before anything is touched. ``${VAR}`` in any string value is replaced from the
environment; a missing variable is an error. Secrets are held as ``SecretStr`` so that
they never show up in a repr, a log line or an error message.
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from core.algorithms import ZONE_SIGNING_ALGORITHMS as _SIGNING_ALGORITHMS
from core.config_types import Duration, Fqdn, HostPort, _fqdn, _show, _Strict, hostport
from core.errors import ConfigError
from core.owner_ksk import OwnerKskConfig
from core.parent_agent_config import ParentAgentConfig
from core.provider_config import (
    AnyProvider,
    AnyProviderConfig,
    CloudflareProviderConfig,
    DesecProviderConfig,
    KnotProviderConfig,
    Ns1ProviderConfig,
    PluginProviderConfig,
    ProviderConfig,
    Rfc2136ProviderConfig,
    Route53ProviderConfig,
)

DEFAULT_CONFIG = "multisigner.toml"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


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


_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_REGISTERED = re.compile(rf"^{_LABEL}(?:\.{_LABEL})+$")
# The keys of [zones.parent] that belong to one type only (checked in ParentConfig._sig0).
_ONLY_FOR: dict[str, tuple[str, ...]] = {
    "dsync": ("sig0_directory", "sig0_algorithm"),
    "route53domains": ("domain", "region", "profile"),
}


class ParentConfig(_Strict):
    """How the parent learns of DS changes: it scans the child's CDS/CDNSKEY
    (``cds-scan``), or the controller finds its UPDATE receiver via DSYNC (RFC 9859) and
    sends SIG(0)-signed DNS UPDATEs (``dsync``) with keys from ``sig0_directory``, or it
    associates the DS at the registrar through the Route 53 Domains API
    (``route53domains``: ``domain``, ``region``, ``profile``; AWS credentials from the
    usual chain). In every case the DS is then *observed* at the parent's nameservers."""

    type: Literal["cds-scan", "dsync", "route53domains"] = "cds-scan"
    nameservers: list[HostPort] = Field(default_factory=list)
    sig0_directory: Path | None = None
    sig0_algorithm: str = "ECDSAP256SHA256"
    # route53domains: the registered domain (default: the zone's name, which it must be).
    domain: str | None = None
    # Route 53 Domains is served from us-east-1 only; another value is for a test double.
    region: str = "us-east-1"
    profile: str | None = None  # an AWS shared-config profile; default: the usual chain

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str | None) -> str | None:
        if value is None:
            return None
        name = value.strip().rstrip(".").lower()
        if not _REGISTERED.match(name):
            raise ValueError(f"{value!r} is not a registered domain name (letters, digits and "
                             "hyphens, at least two labels; IDNs in their xn-- form)")
        return name

    def registered_domain(self, zone: str) -> str:
        """``route53domains``: the domain as the registrar names it (no trailing dot)."""
        return self.domain or zone.rstrip(".").lower()

    @field_validator("sig0_algorithm")
    @classmethod
    def _sig0_algorithm(cls, value: str) -> str:
        from dns.dnssectypes import Algorithm

        from core.sig0 import SIG0_ALGORITHMS

        try:
            number = Algorithm.from_text(value.strip().upper())
        except Exception:
            number = None
        if number is None or number not in SIG0_ALGORITHMS:
            raise ValueError(f"{value!r} is not a SIG(0) key algorithm; use one of "
                             + ", ".join(a.name for a in SIG0_ALGORITHMS))
        return str(Algorithm(number).name)

    @model_validator(mode="after")
    def _sig0(self) -> ParentConfig:
        if self.type == "dsync" and self.sig0_directory is None:
            raise ValueError('sig0_directory: type = "dsync" needs the directory of the '
                             "zone's SIG(0) keys (0700), e.g. /var/lib/multisigner/sig0")
        for owner, keys in _ONLY_FOR.items():
            if self.type != owner and set(keys) & self.model_fields_set:
                named = ", ".join(keys[:-1]) + f" and {keys[-1]}"
                raise ValueError(f'{named} apply to type = "{owner}" only, '
                                 f'not to type = "{self.type}"')
        return self


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
    def _registered(self) -> ZoneConfig:
        parent = self.parent
        if parent.type == "route53domains" and parent.domain is not None and \
                parent.domain != self.name.rstrip(".").lower():
            raise ValueError(
                f"parent.domain: {parent.domain!r} is not the zone {self.name}; the registrar "
                "holds the DS of the registered domain itself, so the zone must be that "
                "domain (leave domain out to use the zone's name)")
        return self

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
    parent_agent: ParentAgentConfig | None = None

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
        agent = self.parent_agent
        if agent is not None and agent.provider not in names:
            raise ValueError(f"parent_agent.provider: no provider named {agent.provider!r} "
                             f"(configured: {', '.join(names) or 'none'})")
        return self

    def provider(self, name: str) -> AnyProviderConfig:
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


# pydantic puts the discriminator's tag in the error path; it is not a key the user wrote.
_UNION_TAGS = {"powerdns", "knot", "rfc2136", "desec", "cloudflare", "route53", "ns1",
               "plugin"}


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


__all__ = ["DEFAULT_CONFIG", "AnyProvider", "AnyProviderConfig", "CloudflareProviderConfig",
           "Config", "DesecProviderConfig", "HistoryConfig", "KnotProviderConfig",
           "Ns1ProviderConfig", "ParentAgentConfig", "ParentConfig", "PluginProviderConfig",
           "PolicyConfig", "ProviderConfig", "Rfc2136ProviderConfig", "Route53ProviderConfig",
           "StateConfig", "ZoneConfig", "find_config_path", "hostport", "load_config"]
