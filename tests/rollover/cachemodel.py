"""The invariant watcher's model of resolver caches (RFC 7583 sec. 2 and 3; RFC 8901 sec. 8).
Pure: no I/O, no clock; every method takes the instant it reasons about.

A validating resolver -- or a chain of forwarding caches, each filled from whichever server
or upstream it happened to ask -- may hold at one instant ANY DS RRset the parent served,
ANY DNSKEY RRset (with the RRSIGs it came with) any provider served and ANY signed data
RRset any provider served, each until the last time it was served plus its TTL. Every such
combination must validate:

- chain (DS, DNSKEY): a DS of the DS RRset matches a zone key of the DNSKEY RRset, and an
  RRSIG over that DNSKEY RRset made by such a key verifies and is valid at that instant;
- data (DNSKEY, data): an RRSIG of the data RRset made by a key of the DNSKEY RRset
  verifies and is valid at that instant.

A combination (DS, DNSKEY, data) fails exactly when its (DS, DNSKEY) pair or its (DNSKEY,
data) pair fails, so checking every pair of cacheable RRsets checks every combination in
|DS| x |DNSKEY| + |DNSKEY| x |data| pair checks. Cryptographic results are remembered per
(RRset, RRSIG, key): a signature that verified once verifies forever, only its validity
period is checked again at each instant. A failing pair is reported with the rest of the
combination named, so a report says which DS RRset from which parent server when, which
DNSKEY RRset from which provider when, and which data RRset.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import dns.dnssec
import dns.exception
import dns.name
import dns.rdata
import dns.rdatatype
import dns.rrset

Source = tuple[str, str]  # (provider name or "parent", "address:port")
Identity = tuple[int, frozenset[bytes], frozenset[bytes]]  # (type, rdata, RRSIG rdata)

_ZONE_KEY_FLAG = 0x0100  # RFC 4034 sec. 2.1.1: only zone keys may validate


def _digests(rrset: dns.rrset.RRset | None) -> frozenset[bytes]:
    return frozenset(rd.to_digestable() for rd in rrset) if rrset is not None else frozenset()


def stamp(t: float) -> str:
    """Wall-clock ``t`` as UTC "HH:MM:SS.mmm", as a reader compares it with logs."""
    whole = int(t)
    return time.strftime("%H:%M:%S", time.gmtime(whole)) + f".{int((t - whole) * 1000):03d}"


@dataclass
class Served:
    """One distinct RRset, with the RRSIGs it came with, as one or more servers served it.

    ``seen`` keeps, per (provider, server), the first and the last time that server served
    it. A resolver may hold it until the last time anyone served it plus its TTL, and no
    longer than its signatures are valid (RFC 4035 sec. 5.3.3 caps the cached TTL there)."""

    rdtype: int
    rrset: dns.rrset.RRset
    sigs: dns.rrset.RRset | None
    ttl: int
    first_seen: float
    last_seen: float
    seen: dict[Source, list[float]] = field(default_factory=dict)
    # (RRSIG rdata, DNSKEY rdata) -> the signature verifies over this RRset with that key
    verified: dict[tuple[bytes, bytes], bool] = field(default_factory=dict, repr=False)

    @property
    def expires(self) -> float:
        until = self.last_seen + self.ttl
        if self.sigs:
            until = min(until, max(float(s.expiration) for s in self.sigs))
        return until

    def cacheable(self, now: float) -> bool:
        return self.first_seen <= now < self.expires

    @property
    def type_text(self) -> str:
        return dns.rdatatype.to_text(self.rdtype)  # type: ignore[arg-type]

    @property
    def sig_tags(self) -> tuple[int, ...]:
        return tuple(sorted({int(s.key_tag) for s in self.sigs})) if self.sigs else ()

    @property
    def tags(self) -> tuple[int, ...]:
        """Key tags of the records themselves: DNSKEY key tags, DS key tags, else ()."""
        if self.rdtype == dns.rdatatype.DNSKEY:
            return tuple(sorted(int(dns.dnssec.key_id(k)) for k in self.rrset))
        if self.rdtype == dns.rdatatype.DS:
            return tuple(sorted(int(d.key_tag) for d in self.rrset))
        return ()

    @property
    def providers(self) -> str:
        return ",".join(sorted({who for who, _ in self.seen}))

    @property
    def servers(self) -> str:
        return ",".join(sorted({server for _, server in self.seen}))

    @property
    def content(self) -> frozenset[bytes]:
        """The records alone: DNSKEY RRsets signed by different keys share it."""
        return _digests(self.rrset)

    def describe(self) -> str:
        what = self.type_text + " RRset"
        if self.rdtype in (dns.rdatatype.DNSKEY, dns.rdatatype.DS):
            what += f" {list(self.tags)}"
        if self.rdtype != dns.rdatatype.DS:
            what += f" signed by {list(self.sig_tags)}"
        where = "; ".join(f"served by {who} {server} {stamp(first)}..{stamp(last)}"
                          for (who, server), (first, last) in sorted(self.seen.items()))
        return f"{what} ({where}; TTL {self.ttl}, cacheable until {stamp(self.expires)})"

    def saw(self, source: Source, at: float, ttl: int) -> None:
        span = self.seen.setdefault(source, [at, at])
        span[0], span[1] = min(span[0], at), max(span[1], at)
        self.first_seen = min(self.first_seen, at)
        self.last_seen = max(self.last_seen, at)
        self.ttl = max(self.ttl, ttl)


@dataclass(frozen=True)
class Violation:
    """A failing pair of RRsets a resolver may hold together at ``at``.

    ``kind`` "ds": the DNSKEY RRset does not chain to the DS RRset (whatever data RRset
    the resolver holds with them); "signature": the data RRset does not validate under the
    DNSKEY RRset (whatever DS RRset the resolver holds with them)."""

    at: float
    kind: str
    dnskey: Served
    ds: Served | None = None
    data: Served | None = None
    detail: str = ""
    others: int = 0  # how many cacheable RRsets complete the combination

    def combination(self) -> str:
        ds = (self.ds.describe() if self.ds is not None
              else f"any of the {self.others} cacheable DS RRsets")
        data = (self.data.describe() if self.data is not None
                else f"any of the {self.others} cacheable data RRsets")
        return f"DS: {ds} | DNSKEY: {self.dnskey.describe()} | data: {data}"


def _valid_at(sig: dns.rdata.Rdata, now: float) -> bool:
    return bool(sig.inception <= now <= sig.expiration)  # type: ignore[attr-defined]


class CacheModel:
    """Every DS, DNSKEY and signed data RRset served, and the check of every combination."""

    def __init__(self, zone: dns.name.Name) -> None:
        self.zone = zone
        self.ds_sets: dict[Identity, Served] = {}
        self.dnskey_sets: dict[Identity, Served] = {}
        self.data_sets: dict[Identity, Served] = {}
        self._ds_matches: dict[tuple[bytes, bytes], bool] = {}

    def observe(self, source: Source, at: float, rrset: dns.rrset.RRset,
                sigs: dns.rrset.RRset | None) -> Served:
        """``source`` served ``rrset`` (with ``sigs``) at ``at``."""
        rdtype = int(rrset.rdtype)
        if rdtype == dns.rdatatype.DS:
            store, sigs = self.ds_sets, None  # the parent's signature is not checked here
        elif rdtype == dns.rdatatype.DNSKEY:
            store = self.dnskey_sets
        else:
            store = self.data_sets
        key: Identity = (rdtype, _digests(rrset), _digests(sigs))
        served = store.get(key)
        if served is None:
            served = store[key] = Served(rdtype, rrset, sigs, int(rrset.ttl), at, at)
        served.saw(source, at, int(rrset.ttl))
        return served

    def cacheable(self, now: float) -> tuple[list[Served], list[Served], list[Served]]:
        return ([s for s in self.ds_sets.values() if s.cacheable(now)],
                [s for s in self.dnskey_sets.values() if s.cacheable(now)],
                [s for s in self.data_sets.values() if s.cacheable(now)])

    def check(self, now: float) -> list[Violation]:
        """Every failing pair among the RRsets a resolver may hold at ``now``."""
        ds_sets, dnskey_sets, data_sets = self.cacheable(now)
        out: list[Violation] = []
        for keys in dnskey_sets:
            for ds in ds_sets:
                if why := self.chain_failure(ds, keys, now):
                    out.append(Violation(now, "ds", keys, ds=ds, detail=why,
                                         others=len(data_sets)))
            for data in data_sets:
                if why := self.data_failure(keys, data, now):
                    out.append(Violation(now, "signature", keys, data=data, detail=why,
                                         others=len(ds_sets)))
        return out

    # ------------------------------------------------------------------ the two pair checks

    def chain_failure(self, ds: Served, keys: Served, now: float) -> str:
        """Why ``keys`` does not validate under ``ds`` at ``now`` ("" when it does)."""
        trusted = [k for k in keys.rrset if k.flags & _ZONE_KEY_FLAG
                   and any(self._matches(k, d) for d in ds.rrset)]
        if not trusted:
            return "no zone key of the DNSKEY RRset matches a DS of the DS RRset"
        return self._signed_by(keys, trusted, now, "a DS-matching key")

    def data_failure(self, keys: Served, data: Served, now: float) -> str:
        """Why ``data`` does not validate under ``keys`` at ``now`` ("" when it does)."""
        zone_keys = [k for k in keys.rrset if k.flags & _ZONE_KEY_FLAG]
        return self._signed_by(data, zone_keys, now, "a key of the DNSKEY RRset")

    def _signed_by(self, served: Served, keys: list[dns.rdata.Rdata], now: float,
                   whose: str) -> str:
        tags = {int(dns.dnssec.key_id(k)): k for k in keys}  # type: ignore[arg-type]
        by_key = [s for s in served.sigs or () if s.key_tag in tags]
        if not by_key:
            return (f"no RRSIG over the {served.type_text} RRset (by {list(served.sig_tags)}) "
                    f"is by {whose} {sorted(tags)}")
        verifying = [s for s in by_key if any(self._verifies(served, s, k) for k in keys)]
        if not verifying:
            return f"no RRSIG by {whose} over the {served.type_text} RRset verifies"
        if not any(_valid_at(s, now) for s in verifying):
            return (f"every RRSIG by {whose} over the {served.type_text} RRset is outside "
                    f"its validity period at {stamp(now)}")
        return ""

    def _matches(self, key: dns.rdata.Rdata, ds: dns.rdata.Rdata) -> bool:
        memo = (key.to_digestable(), ds.to_digestable())
        hit = self._ds_matches.get(memo)
        if hit is None:
            try:
                made = dns.dnssec.make_ds(self.zone, key, ds.digest_type,  # type: ignore[attr-defined]
                                          validating=True)
                hit = made == ds
            except (dns.exception.DNSException, ValueError):
                hit = False
            self._ds_matches[memo] = hit
        return hit

    def _verifies(self, served: Served, sig: dns.rdata.Rdata, key: dns.rdata.Rdata) -> bool:
        """Whether ``sig`` over ``served`` verifies with ``key``, validity period aside."""
        memo = (sig.to_digestable(), key.to_digestable())
        hit = served.verified.get(memo)
        if hit is None:
            hit = self._crypto(served.rrset, sig, key)
            served.verified[memo] = hit
        return hit

    def _crypto(self, rrset: dns.rrset.RRset, sig: dns.rdata.Rdata,
                key: dns.rdata.Rdata) -> bool:
        if (sig.key_tag != dns.dnssec.key_id(key)  # type: ignore[attr-defined,arg-type]
                or sig.algorithm != key.algorithm):  # type: ignore[attr-defined]
            return False
        anchor = dns.rrset.from_rdata_list(self.zone, rrset.ttl, [key])
        try:
            # at its own inception, so only the cryptography decides; the caller checks
            # the validity period against the instant it reasons about
            dns.dnssec.validate_rrsig(rrset, sig, {self.zone: anchor},  # type: ignore[arg-type]
                                      now=float(sig.inception))  # type: ignore[attr-defined]
        except dns.exception.DNSException:  # ValidationFailure is one
            return False
        return True
