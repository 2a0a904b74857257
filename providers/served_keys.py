"""A provider's own keys, read from what its nameservers serve.

For services whose API does not list the keys they sign with (deSEC), or lists them only
in part (Cloudflare: one KSK in the DNSSEC endpoint), the served zone is the truth:
**a served DNSKEY is the provider's own iff an RRSIG it serves verifies with it** (over
the DNSKEY RRset or the SOA). The controller only ever adds foreign keys, it never signs
at this provider with them, so an imported key never carries a signature there; the test
is cryptographic, so a foreign key sharing an own key's tag is still foreign.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence, Set

import dns.name
import dns.rdatatype

from core.errors import ProviderError
from core.keys import Key, Role, signers
from core.observation import ApiKey, ServerView
from providers.nameservers import observe_server
from providers.rfc2136.served import key_handle

# zone → what one of the provider's nameservers serves at its apex
ServeFn = Callable[[str], Awaitable[ServerView]]

_TYPES = (dns.rdatatype.DNSKEY, dns.rdatatype.SOA, dns.rdatatype.CDS, dns.rdatatype.CDNSKEY)


def dns_reader(provider: str, nameservers: Sequence[str], timeout: float) -> ServeFn:
    """Ask the provider's nameservers in turn; the first usable answer counts."""

    async def serve(zone: str) -> ServerView:
        errors = []
        for server in nameservers:
            view = await observe_server(dns.name.from_text(zone), provider, server,
                                        timeout=timeout, only=_TYPES)
            if view.ok and view.dnskey is not None:
                return view
            errors.append(f"{server}: {view.error or 'no DNSKEY RRset'}")
        raise ProviderError(f"none of its nameservers serves the signed zone "
                            f"({'; '.join(errors)}); its own keys are read by DNS, so they "
                            "cannot be known now", provider=provider, zone=zone)

    return serve


def served_dnskeys(view: ServerView) -> set[Key]:
    if view.dnskey is None:
        return set()
    return {Key.from_rdata(rd) for rd in view.dnskey.rrset}


def own_keys(view: ServerView, written: Set[Key] | None = None) -> tuple[ApiKey, ...]:
    """The served DNSKEYs that sign the DNSKEY RRset (KSK, or CSK if they also sign the
    SOA) or only the SOA (ZSK), active and published. With ``written`` (the DNSKEYs the
    provider's API holds as written by the controller), also every served key that signs
    nothing and was not written: one the provider published itself without signing with
    it, i.e. its pre-published successor (or a retired key it still serves), published
    and not active. Without ``written`` such a key is indistinguishable from a foreign
    one and is not listed."""
    keys = served_dnskeys(view)
    over_keys = signers(keys, view.dnskey.rrset, view.dnskey.rrsigs) if view.dnskey else set()
    over_soa = signers(keys, view.soa.rrset, view.soa.rrsigs) if view.soa else set()
    own: list[ApiKey] = []
    for key in sorted(over_keys | over_soa):
        role: Role = ("csk" if key in over_soa else "ksk") if key.sep else "zsk"
        own.append(ApiKey(key=key, role=role, active=True, published=True,
                          key_id=key_handle(key)))
    if written is not None:
        for key in sorted(keys - over_keys - over_soa - written):
            own.append(ApiKey(key=key, role="ksk" if key.sep else "zsk", active=False,
                              published=True, key_id=key_handle(key)))
    return tuple(own)
