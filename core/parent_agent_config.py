"""``[parent_agent]``: the parent-side agent a parent operator runs in front of the parent
zone (docs/parent-agent.md): where it listens, which provider hosts the parent zone, how a
child's SIG(0) key is bootstrapped, and how often delegations are scanned for CDS/CSYNC."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from core.config_types import Duration, Fqdn, HostPort, _Strict

BootstrapMethod = Literal["at-apex", "unsigned"]


class ParentAgentConfig(_Strict):
    zone: Fqdn
    provider: str
    listen: list[HostPort] = Field(min_length=1)
    target: Fqdn
    bootstrap: list[BootstrapMethod] = Field(
        default_factory=lambda: list[BootstrapMethod](["at-apex"]))
    bootstrap_checks: int = Field(default=3, ge=1, le=100)
    bootstrap_interval: Duration = timedelta(seconds=1)
    key_directory: Path | None = None
    notify: bool = True
    scan_interval: Duration = timedelta(hours=1)
    # Optional, beyond the basic contract: where a child nameserver answers when that is
    # not port 53 at the addresses DNS gives (labs, test beds): name -> "address:port".
    hosts: dict[Fqdn, HostPort] = Field(default_factory=dict)
    # TTL of the DS, NS and glue RRsets the agent writes when the parent has none yet.
    ttl: int = Field(default=3600, ge=0, le=604800)
    # Requests accepted per second from one source address and for one SIG(0) key (each
    # with a burst of the same size); the rest are answered REFUSED without work.
    rate_limit: float = Field(default=20.0, gt=0)
    # A signed UPDATE whose SIG(0) time is further than this from the agent's clock is
    # refused (BADTIME): the replay window.
    time_window: Duration = timedelta(minutes=5)

    @field_validator("bootstrap")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a bootstrap method is listed twice")
        return value

    @field_validator("time_window")
    @classmethod
    def _window(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return value

    @model_validator(mode="after")
    def _bootstrap_interval(self) -> ParentAgentConfig:
        if "unsigned" in self.bootstrap and self.bootstrap_interval <= timedelta(0):
            raise ValueError("bootstrap_interval: the 'unsigned' method needs checks spaced "
                             "in time (e.g. \"1h\"), so a spoofed KEY expires between them")
        return self
