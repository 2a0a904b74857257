"""The parent's DSYNC RRset (RFC 9859): where children send UPDATEs and NOTIFYs.

``_dsync.<zone>`` gets ``ANY 2 <port> <target>`` (scheme 2: DNS UPDATE, as
draft-ietf-dnsop-delegation-mgmt-via-ddns defines it) and, when NOTIFY is accepted,
``CDS 1 <port> <target>`` and ``CSYNC 1 <port> <target>`` (scheme 1: NOTIFY). When the
target is inside the parent zone, its address records are published too (from the listen
addresses), and its KEY when the agent has one (so a child can check the agent's signed
answers). Records are written in RFC 3597 generic form (``TYPE66 \\# ...``) so that
servers that predate DSYNC store and serve them all the same.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from providers.base import ApiRRset

SCHEME_NOTIFY = 1
SCHEME_UPDATE = 2


def dsync_rdatas(port: int, target: str, notify: bool) -> list[dns.rdata.Rdata]:
    wanted = [("ANY", SCHEME_UPDATE)]
    if notify:
        wanted += [("CDS", SCHEME_NOTIFY), ("CSYNC", SCHEME_NOTIFY)]
    return [dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.DSYNC,
                                f"{rrtype} {scheme} {port} {target}")
            for rrtype, scheme in wanted]


def generic(rd: dns.rdata.Rdata) -> str:
    """RFC 3597 presentation form of an rdata (``\\# LEN HEX``)."""
    data = rd.to_wire() or b""
    return f"\\# {len(data)} {data.hex()}"


def records(zone: str, target: str, listen: Sequence[tuple[str, int]], notify: bool,
            ttl: int, key: str | None = None) -> list[ApiRRset]:
    """The RRsets the agent publishes in the parent zone."""
    port = listen[0][1]
    owner = f"_dsync.{zone}" if zone != "." else "_dsync."
    out = [ApiRRset(owner.lower(), f"TYPE{int(dns.rdatatype.DSYNC)}", ttl,
                    tuple(sorted(generic(rd) for rd in dsync_rdatas(port, target, notify))))]
    if dns.name.from_text(target).is_subdomain(dns.name.from_text(zone)):
        v4: list[str] = []
        v6: list[str] = []
        for host, _ in listen:
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                continue
            if address.is_unspecified:
                continue
            (v4 if address.version == 4 else v6).append(str(address))
        if v4:
            out.append(ApiRRset(target.lower(), "A", ttl, tuple(sorted(set(v4)))))
        if v6:
            out.append(ApiRRset(target.lower(), "AAAA", ttl, tuple(sorted(set(v6)))))
        if key is not None:
            out.append(ApiRRset(target.lower(), "KEY", ttl, (key,)))
    return out

