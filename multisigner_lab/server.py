"""What a test needs to know about one lab DNS server: :class:`Endpoint` for any of them,
:class:`Server` for a PowerDNS one (provider or parent); the Model 1 lab's Knot providers
are :class:`lab.model1.KnotServer`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Endpoint:
    """A lab nameserver: where it answers and the NS name the delegation gives it."""

    name: str  # "p0".., "k0".., or "parent"
    address: str  # its own 127/8 address
    dns_port: int
    ns_name: str  # "ns1.p0.test." ("ns.test." for the parent)

    @property
    def nameserver(self) -> str:
        """``address:port``, the form of ``nameservers`` in multisigner.toml."""
        return f"{self.address}:{self.dns_port}"

    @staticmethod
    def fields(data: Mapping[str, Any]) -> dict[str, Any]:
        """The :class:`Endpoint` fields of a server's entry in ``lab.json``."""
        return {
            "name": str(data["name"]),
            "address": str(data["address"]),
            "dns_port": int(data["dns_port"]),
            "ns_name": str(data["ns_name"]),
        }


@dataclass(frozen=True)
class Server(Endpoint):
    """A PowerDNS server of the lab and its API."""

    api_url: str  # http://127.0.0.1:PORT (no /api/v1 path), as in multisigner.toml
    api_key: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Server:
        return cls(
            **cls.fields(data), api_url=str(data["api_url"]), api_key=str(data["api_key"])
        )
