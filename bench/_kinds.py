"""Request labels shared by the counting wrapper (_counted_cli.py) and the I/O floor
(bench_sync.py), so the two request counts are compared key by key."""

from __future__ import annotations

from typing import Any

import dns.rdatatype


def http_kind(method: str, path: str) -> str:
    """``http GET zone`` (/zones/Z), ``http GET cryptokeys`` (/zones/Z/cryptokeys), ..."""
    if path.endswith("/cryptokeys"):
        return f"http {method} cryptokeys"
    if "/zones/" in path:
        return f"http {method} zone"
    return f"http {method} other"


def dns_kind(transport: str, q: Any, where: str, port: int, parent: str) -> str:
    """``dns udp DNSKEY provider``, ``dns udp DS parent``, ..."""
    rdtype = dns.rdatatype.to_text(q.question[0].rdtype)
    dest = "parent" if f"{where}:{port}" == parent else "provider"
    return f"dns {transport} {rdtype} {dest}"
