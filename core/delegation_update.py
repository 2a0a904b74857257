"""The DNS UPDATEs (RFC 2136) a child sends its parent's receiver. No I/O.

Every change replaces whole RRsets (delete the RRset, then add every record), so sending
the same UPDATE twice leaves the parent as sending it once: a retry after a lost answer
is safe. The zone section names the parent zone; every name changed is the child's own
delegation point or, for glue, a name below it (in bailiwick) — what a receiver's
policy allows a child to touch.

    delegation_update(parent, child, ds=..., ns=..., glue=...)   DS and/or NS + glue
    key_bootstrap(parent, child, key)                            the child's KEY (sent
                                                                 signed by that key)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.update
from dns.rdtypes.ANY.DS import DS
from dns.rdtypes.ANY.KEY import KEY


def _check_child(parent: dns.name.Name, child: dns.name.Name) -> None:
    if child == parent or not child.is_subdomain(parent):
        raise ValueError(f"{child} is not a child of {parent}")


def _address_rdata(address: str) -> dns.rdata.Rdata:
    ip = ipaddress.ip_address(address)
    rdtype = dns.rdatatype.A if ip.version == 4 else dns.rdatatype.AAAA
    return dns.rdata.from_text(dns.rdataclass.IN, rdtype, str(ip))


def delegation_update(
    parent: dns.name.Name,
    child: dns.name.Name,
    *,
    ds: Iterable[DS] | None = None,
    ns: Iterable[dns.name.Name] | None = None,
    glue: Mapping[dns.name.Name, Iterable[str]] | None = None,
    ttl: int = 3600,
) -> dns.update.UpdateMessage:
    """One UPDATE replacing the child's DS RRset (``ds``; an empty one deletes it: the
    caller's interlocks decide whether going insecure is allowed), its NS RRset (``ns``)
    and the glue (``glue``: name → addresses; a name mapped to no address has its glue
    deleted). ``None`` leaves that part alone. Glue must be in bailiwick (below
    ``child``); an NS RRset must not be empty."""
    _check_child(parent, child)
    update = dns.update.UpdateMessage(parent)
    if ds is not None:
        update.delete(child, dns.rdatatype.DS)
        for rd in ds:
            update.add(child, ttl, rd)
    if ns is not None:
        names = list(ns)
        if not names:
            raise ValueError(f"an empty NS RRset would break the delegation of {child}")
        update.delete(child, dns.rdatatype.NS)
        for name in names:
            update.add(child, ttl, dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.NS,
                                                       name.to_text()))
    for name, addresses in (glue or {}).items():
        if not name.is_subdomain(child):
            raise ValueError(f"glue for {name} is out of bailiwick of {child}: the parent "
                             "keeps no address records outside the child's delegation")
        update.delete(name, dns.rdatatype.A)
        update.delete(name, dns.rdatatype.AAAA)
        for address in addresses:
            update.add(name, ttl, _address_rdata(address))
    if not update.update:
        raise ValueError("nothing to change: give ds, ns or glue")
    return update


def key_bootstrap(parent: dns.name.Name, child: dns.name.Name, key: KEY,
                  ttl: int = 3600) -> dns.update.UpdateMessage:
    """The bootstrap UPDATE: the child's KEY (replacing any earlier one), to be sent
    signed by that same key; the parent trusts it only after its own checks."""
    _check_child(parent, child)
    update = dns.update.UpdateMessage(parent)
    update.delete(child, dns.rdatatype.KEY)
    update.add(child, ttl, key)
    return update
