"""DSYNC (RFC 9859): where a parent publishes its delegation-maintenance endpoints, and
which of them a child uses for DNS UPDATE. No I/O.

A parent publishes ``<child labels>._dsync.<parent>`` for one child (child-specific),
and ``_dsync.<parent>`` (or ``*._dsync.<parent>``, which answers the child-specific query
by wildcard synthesis) for every child. A child looks at the child-specific name first,
then at ``_dsync.<parent>`` (RFC 9859 sec. 4.1).

Each DSYNC record is ``RRTYPE SCHEME PORT TARGET``. Scheme 1 is NOTIFY (RFC 9859). The
UPDATE scheme of draft-ietf-dnsop-delegation-mgmt-via-ddns has no IANA number yet; we use
2, the number that draft's implementation (tdns) uses, for records like
``_dsync.test. IN DSYNC ANY 2 5399 updater.test.``. For UPDATE the RRtype is ANY (one
receiver for DS, NS and glue); a record naming DS, CDS, NS or CSYNC is accepted too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import dns.name
import dns.rdatatype
from dns.rdtypes.ANY.DSYNC import DSYNC

SCHEME_NOTIFY = 1
SCHEME_UPDATE = 2
"""DSYNC scheme of DNS UPDATE (provisional, see the module docstring)."""

_UPDATE_RRTYPES = (dns.rdatatype.ANY, dns.rdatatype.DS, dns.rdatatype.CDS,
                   dns.rdatatype.NS, dns.rdatatype.CSYNC)


@dataclass(frozen=True)
class DsyncEndpoint:
    """Where the parent accepts one kind of request: the DSYNC owner it was found at,
    the scheme, the target host name and the port."""

    owner: dns.name.Name
    scheme: int
    port: int
    target: dns.name.Name
    rrtype: int

    def __str__(self) -> str:
        rrtype = dns.rdatatype.to_text(dns.rdatatype.RdataType.make(self.rrtype))
        return (f"{self.target}:{self.port} (DSYNC {rrtype} "
                f"scheme {self.scheme} at {self.owner})")


def dsync_names(child: dns.name.Name, parent: dns.name.Name) -> list[dns.name.Name]:
    """The owner names to look at, in order: child-specific, then the parent's default."""
    if not child.is_subdomain(parent) or child == parent:
        raise ValueError(f"{child} is not below its parent zone {parent}")
    base = dns.name.Name(("_dsync",)).concatenate(parent)
    labels = child.relativize(parent)
    return [labels.concatenate(base), base]


def update_endpoint(owner: dns.name.Name, records: Iterable[DSYNC]) -> DsyncEndpoint | None:
    """The UPDATE endpoint among ``records`` (one RRset's DSYNC rdatas): the ANY one if
    there is one, else the first of DS, CDS, NS, CSYNC; None when none offers UPDATE.
    Port 0 means "not offered" and is skipped."""
    offered = [r for r in records if r.scheme == SCHEME_UPDATE and r.port != 0
               and r.rrtype in _UPDATE_RRTYPES]
    if not offered:
        return None
    best = min(offered, key=lambda r: (_UPDATE_RRTYPES.index(r.rrtype), r.target, r.port))
    return DsyncEndpoint(owner, best.scheme, best.port, best.target, best.rrtype)
