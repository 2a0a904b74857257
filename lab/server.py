"""What a test needs to know about one lab DNS server (provider or parent)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Server:
    name: str  # "p0".., or "parent"
    address: str  # its own 127/8 address
    dns_port: int
    api_url: str  # http://127.0.0.1:PORT (no /api/v1 path), as in multisigner.toml
    api_key: str
    ns_name: str  # "ns1.p0.test." ("ns.test." for the parent)

    @property
    def nameserver(self) -> str:
        """``address:port``, the form of ``nameservers`` in multisigner.toml."""
        return f"{self.address}:{self.dns_port}"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Server:
        return cls(
            name=str(data["name"]),
            address=str(data["address"]),
            dns_port=int(data["dns_port"]),
            api_url=str(data["api_url"]),
            api_key=str(data["api_key"]),
            ns_name=str(data["ns_name"]),
        )
