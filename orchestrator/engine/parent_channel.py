"""How the parent learns of a DS or NS change: the zone's parent channel.

- ``cds-scan``: nothing to send. The CDS/CDNSKEY (and CSYNC) RRsets the step publishes are
  the request; the parent scans them when it will, and the engine observes its DS.
- ``dsync``: the controller pushes the change (RFC 9859 DSYNC, draft-ietf-dnsop-delegation-
  mgmt-via-ddns): the zone's SIG(0) KEY is kept at its apex at every signer; once every
  nameserver serves it, the parent is asked about it (KeyState) and, while it does not
  know it, sent the self-signed bootstrap UPDATE; once it trusts the key, a DS (or NS)
  RRset the parent's servers do not serve yet is sent as one signed UPDATE replacing the
  whole RRset (a retry is harmless). The engine still *observes* the parent's servers
  before any step continues: an accepted UPDATE is not a served DS.

The engine calls ``nudge`` from an ``observe`` phase, on its full reads only (every
API_REFRESH_SECONDS), when the step waits for the parent and for nothing else: keys go in
before any DS names them, exactly as with CDS scanning. Each message sent, and its answer,
is returned for the process history.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from dns.rdtypes.ANY.DS import DS

from core.config import ZoneConfig
from core.delegation_update import delegation_update, key_bootstrap
from core.errors import MultisignerError
from core.keys import Digest, Key, parent_follows
from core.keystate import ParentKeyState
from core.observation import ZoneView
from core.sig0 import key_tag_of
from orchestrator.observe.observer import parent_servers
from orchestrator.runtime import Runtime
from providers.base import Capability
from providers.nameservers import query
from providers.parent.client import DsyncParent
from providers.parent.errors import ParentError

# A DS/NS UPDATE the parent answered NOERROR is not sent again for this long while its
# servers catch up (the UPDATE replaces the RRset, so an early resend is merely wasted).
RESEND_SECONDS = 10.0
# How long a KeyState answer other than "bootstrapping" is believed.
KEY_STATE_SECONDS = 2.0
# The longest pause between KeyState inquiries while the parent checks the key.
MAX_INQUIRY_SECONDS = 60.0
# The KEY RRset's TTL when no served DNSKEY RRset says better (see _key_ttl).
DEFAULT_KEY_TTL = 3600


def _key_text(key: dns.rdata.Rdata) -> str:
    """A KEY in the one-token form the PowerDNS API takes (dnspython's text breaks the
    base64 with spaces, which the API refuses as "Not in expected format")."""
    flags, protocol, algorithm, *b64 = key.to_text().split()
    return f"{flags} {protocol} {algorithm} {''.join(b64)}"


def _canonical_key(text: str) -> str:
    return _key_text(dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.KEY, text))


def _ds_rdata(digest: Digest) -> DS:
    rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.DS, digest.text)
    assert isinstance(rdata, DS)
    return rdata


def _parent_ttl(view: ZoneView) -> int:
    """The TTL the parent serves the DS with now (kept), else an hour."""
    return next((p.ds.ttl for p in view.parent if p.ds is not None), 3600)


def _key_ttl(view: ZoneView) -> int | None:
    """The KEY RRset's TTL: the DNSKEY RRset's as served (the largest; None when the view
    holds no served DNSKEY RRset). The KEY is a signed RRset of the zone, so its TTL
    counts in every hold on TTLsig; with the DNSKEY TTL it never lengthens one (TTLsig is
    never below TTLkey)."""
    return max((s.dnskey.ttl for s in view.servers if s.dnskey is not None), default=None)


@dataclass
class DsyncChannel:
    """The dsync parent of one zone (made once per zone by the engine)."""

    rt: Runtime
    zone: ZoneConfig
    _parent: DsyncParent | None = None
    _pushed: tuple[float, tuple[str, ...]] = (0.0, ())
    _bootstrap_sent: float = 0.0
    # the last KeyState answer, and until when (monotonic) it is believed
    _key_state: tuple[float, ParentKeyState] | None = None
    _backoff: float = 0.0

    async def client(self) -> DsyncParent:
        if self._parent is None:
            self._parent = DsyncParent(dns.name.from_text(self.zone.name), self.zone.parent,
                                       await parent_servers(self.zone))
        return self._parent

    async def publish_key(self, view: ZoneView) -> list[str]:
        """The zone's KEY RRset (every SIG(0) key of its store; one is made if there is
        none) at the apex of every signer, read before write, with the TTL of the DNSKEY
        RRset ``view`` saw served (see :func:`_key_ttl`)."""
        client = await self.client()
        client.ensure_key()
        keys = client.published_keys()
        want = sorted(_key_text(k) for k in keys)
        ttl = _key_ttl(view)
        out: list[str] = []
        for name in self.rt.signers(self.zone):
            provider = self.rt.provider(name)
            if not provider.can(Capability.WRITE_RRSETS):
                raise MultisignerError(
                    f"{self.zone.name}: provider {name} ({provider.type_name}) cannot write "
                    "arbitrary RRsets, so it cannot publish the zone's SIG(0) KEY; the "
                    "parent's DSYNC channel needs every signer to serve it")
            have = await provider.read_rrset(self.zone.name, self.zone.name, "KEY")
            keep_ttl = ttl or (have.ttl if have is not None else DEFAULT_KEY_TTL)
            if have is None or have.ttl != keep_ttl or sorted(
                    _canonical_key(r) for r in have.records) != want:
                await provider.set_rrset(self.zone.name, self.zone.name, "KEY", want,
                                         keep_ttl)
                out.append(f"{name}: KEY RRset = SIG(0) key(s) "
                           f"{', '.join(str(key_tag_of(k)) for k in keys)}")
        return out

    async def served_keys(self, client: DsyncParent) -> dict[str, frozenset[str] | None]:
        """The KEY RRset (rdata texts) each signer's nameserver serves at the apex; None
        for one that did not answer."""
        served: dict[str, frozenset[str] | None] = {}
        for provider in self.rt.signers(self.zone):
            for server in self.rt.config.provider(provider).nameservers:
                try:
                    answer = await query(server, client.zone, dns.rdatatype.KEY)
                except MultisignerError:
                    served[server] = None
                    continue
                served[server] = frozenset(rd.to_text() for rrset in answer.answer
                                           if rrset.rdtype == dns.rdatatype.KEY
                                           for rd in rrset)
        return served

    async def _key_lagging(self, client: DsyncParent) -> list[str]:
        """The signers' nameservers that do not serve the zone's KEY RRset yet."""
        want = frozenset(k.to_text() for k in client.published_keys())
        return [server for server, got in (await self.served_keys(client)).items()
                if got != want]

    def forget_key_state(self) -> None:
        """Drop the remembered KeyState answer: the signing key changed (a key roll)."""
        self._key_state = None
        self._backoff = 0.0

    async def _state(self, client: DsyncParent) -> ParentKeyState:
        now = time.monotonic()
        if self._key_state is not None and now < self._key_state[0]:
            return self._key_state[1]
        answer = await client.key_state()
        if answer.view == ParentKeyState.BOOTSTRAPPING:
            # The parent's checks take as long as its operator set them up to (seconds in
            # a lab, hours at a registry): ask again after 1 s, 2 s, 4 s ... at most 60 s.
            self._backoff = min(max(self._backoff * 2, 1.0), MAX_INQUIRY_SECONDS)
            self._key_state = (now + self._backoff, answer.view)
        else:
            self._backoff = 0.0
            self._key_state = (now + KEY_STATE_SECONDS, answer.view)
        return answer.view

    def inquiry_due(self) -> bool:
        """Whether the parent is checking the key and the next KeyState inquiry is due:
        the engine then nudges between its full reads too, so the DS follows the key's
        acceptance within seconds (see :meth:`_state` for the backoff)."""
        return (self._key_state is not None
                and self._key_state[1] == ParentKeyState.BOOTSTRAPPING
                and time.monotonic() >= self._key_state[0])

    async def key_trusted(self, client: DsyncParent) -> str | None:
        """None once the parent trusts the zone's SIG(0) key; else what stands in the way
        (after sending the bootstrap UPDATE if the parent does not know the key and every
        signer's nameserver serves it)."""
        key = client.ensure_key()
        state = await self._state(client)
        if state == ParentKeyState.TRUSTED:
            return None
        if state != ParentKeyState.UNKNOWN:
            return f"SIG(0) key {key.key_tag} at the parent: {state}"
        if time.monotonic() - self._bootstrap_sent < RESEND_SECONDS:
            return f"the parent is checking SIG(0) key {key.key_tag}"
        lagging = await self._key_lagging(client)
        if lagging:
            return f"SIG(0) KEY not served yet at {', '.join(lagging)}"
        found = await client.discover()
        answer = await client.send(key_bootstrap(found.parent, client.zone, key.key_rdata()))
        # the parent starts its checks now: ask about the key again in a second
        self._bootstrap_sent = time.monotonic()
        self._key_state = (self._bootstrap_sent + 1.0, ParentKeyState.BOOTSTRAPPING)
        return (f"sent the KEY bootstrap UPDATE for SIG(0) key {key.key_tag} to "
                f"{answer.server}: NOERROR")

    async def nudge(self, want_ds: frozenset[Key] | None, want_ns: frozenset[str] | None,
                    view: ZoneView) -> list[str]:
        """Push what the parent's servers lack (see the module doc); what was done or
        what stands in the way, for the history and the wait message."""
        try:
            client = await self.client()
            found = await client.discover()
            if found.endpoint is None:
                return [f"channel: {found.channel}"]
            blocked = await self.key_trusted(client)
            if blocked is not None:
                return [blocked]
            ds, ns = self._missing(want_ds, want_ns, view)
            if ds is None and ns is None:
                return []
            ds_sorted = sorted(ds or (), key=lambda d: d.text)
            what = (*(d.text for d in ds_sorted), *sorted(ns or ()))
            if self._pushed[1] == what and time.monotonic() - self._pushed[0] < RESEND_SECONDS:
                return []
            glue = None if ns is None else await self._glue(client.zone, ns, view)
            update = delegation_update(
                found.parent, client.zone,
                ds=None if ds is None else [_ds_rdata(d) for d in ds_sorted],
                ns=None if ns is None else [dns.name.from_text(n) for n in sorted(ns)],
                glue=glue, ttl=_parent_ttl(view))
            answer = await client.send(update)
            self._pushed = (time.monotonic(), what)
            sent = []
            if ds is not None:
                sent.append(f"DS = {', '.join(str(d.key_tag) for d in ds_sorted) or 'none'}")
            if ns is not None:
                sent.append(f"NS = {', '.join(sorted(ns))}")
            for name, addresses in sorted((glue or {}).items()):
                sent.append(f"glue {name} = {', '.join(addresses) or 'none'}")
            return [f"sent UPDATE {'; '.join(sent)} to {answer.server}: NOERROR"]
        except (ParentError, ValueError) as exc:
            return [f"parent UPDATE channel: {exc}"]

    async def _glue(self, zone: dns.name.Name, ns: frozenset[str],
                    view: ZoneView) -> dict[dns.name.Name, list[str]]:
        """Glue for the NS names inside the zone (in bailiwick: the parent cannot find
        their addresses otherwise), as the signers' nameservers serve them; and none for
        an in-bailiwick name the parent delegates to now but the new NS RRset drops (its
        glue would linger). Names outside the zone need none."""
        wanted = {dns.name.from_text(n) for n in ns}
        glue: dict[dns.name.Name, list[str]] = {}
        for name in sorted(n for n in wanted if n.is_subdomain(zone)):
            glue[name] = await self._addresses(name)
            if not glue[name]:
                raise ParentError(f"{zone}: no signer serves an address for the "
                                  f"nameserver {name}, which is inside the zone: the "
                                  "parent needs its glue")
        for name in {dns.name.from_text(n) for p in view.parent for n in p.ns}:
            if name.is_subdomain(zone) and name not in wanted:
                glue[name] = []
        return glue

    async def _addresses(self, name: dns.name.Name) -> list[str]:
        """``name``'s A and AAAA records, from the first signer nameserver answering."""
        for provider in self.rt.signers(self.zone):
            for server in self.rt.config.provider(provider).nameservers:
                try:
                    answers = [await query(server, name, rdtype)
                               for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)]
                except MultisignerError:
                    continue
                return sorted({rd.to_text() for answer in answers for rrset in answer.answer
                               if rrset.name == name and rrset.rdtype in (
                                   dns.rdatatype.A, dns.rdatatype.AAAA) for rd in rrset})
        return []

    def _missing(self, want_ds: frozenset[Key] | None, want_ns: frozenset[str] | None,
                 view: ZoneView) -> tuple[frozenset[Digest] | None, frozenset[str] | None]:
        """The DS and NS RRsets to send: the wanted ones some parent server lacks."""
        ds = None
        if want_ds is not None and any(
                p.error is not None or not parent_follows(p.ds_set, want_ds, self.zone.name)
                for p in view.parent):
            ds = frozenset(k.ds(self.zone.name) for k in want_ds)
        ns = None
        if want_ns is not None and any(p.error is not None or p.ns != want_ns
                                       for p in view.parent):
            ns = want_ns
        return ds, ns
