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
# How long a KeyState answer is believed (the parent's checks take several seconds).
KEY_STATE_SECONDS = 2.0


def _canonical_key(text: str) -> str:
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.KEY, text).to_text()


def _ds_rdata(digest: Digest) -> DS:
    rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.DS, digest.text)
    assert isinstance(rdata, DS)
    return rdata


def _parent_ttl(view: ZoneView) -> int:
    """The TTL the parent serves the DS with now (kept), else an hour."""
    return next((p.ds.ttl for p in view.parent if p.ds is not None), 3600)


@dataclass
class DsyncChannel:
    """The dsync parent of one zone (made once per zone by the engine)."""

    rt: Runtime
    zone: ZoneConfig
    _parent: DsyncParent | None = None
    _pushed: tuple[float, tuple[str, ...]] = (0.0, ())
    _bootstrap_sent: float = 0.0
    _key_state: tuple[float, ParentKeyState] | None = None

    async def client(self) -> DsyncParent:
        if self._parent is None:
            self._parent = DsyncParent(dns.name.from_text(self.zone.name), self.zone.parent,
                                       await parent_servers(self.zone))
        return self._parent

    async def publish_key(self) -> list[str]:
        """The zone's KEY RRset (every SIG(0) key of its store; one is made if there is
        none) at the apex of every signer, read before write."""
        client = await self.client()
        client.ensure_key()
        keys = client.published_keys()
        want = sorted(k.to_text() for k in keys)
        out: list[str] = []
        for name in self.rt.signers(self.zone):
            provider = self.rt.provider(name)
            if not provider.can(Capability.WRITE_RRSETS):
                raise MultisignerError(
                    f"{self.zone.name}: provider {name} ({provider.type_name}) cannot write "
                    "arbitrary RRsets, so it cannot publish the zone's SIG(0) KEY; the "
                    "parent's DSYNC channel needs every signer to serve it")
            have = await provider.read_rrset(self.zone.name, self.zone.name, "KEY")
            if have is None or sorted(_canonical_key(r) for r in have.records) != want:
                await provider.set_rrset(self.zone.name, self.zone.name, "KEY", want, 3600)
                out.append(f"{name}: KEY RRset = SIG(0) key(s) "
                           f"{', '.join(str(key_tag_of(k)) for k in keys)}")
        return out

    async def _key_lagging(self, client: DsyncParent) -> list[str]:
        """The signers' nameservers that do not serve the zone's KEY RRset yet."""
        want = {k.to_text() for k in client.published_keys()}
        lagging: list[str] = []
        for provider in self.rt.signers(self.zone):
            for server in self.rt.config.provider(provider).nameservers:
                try:
                    answer = await query(server, client.zone, dns.rdatatype.KEY)
                except MultisignerError:
                    lagging.append(server)
                    continue
                got = {rd.to_text() for rrset in answer.answer
                       if rrset.rdtype == dns.rdatatype.KEY for rd in rrset}
                if got != want:
                    lagging.append(server)
        return lagging

    async def _state(self, client: DsyncParent) -> ParentKeyState:
        now = time.monotonic()
        if self._key_state is not None and now - self._key_state[0] < KEY_STATE_SECONDS:
            return self._key_state[1]
        answer = await client.key_state()
        self._key_state = (now, answer.view)
        return answer.view

    async def key_trusted(self, client: DsyncParent) -> str | None:
        """None once the parent trusts the zone's SIG(0) key; else what stands in the way
        (after sending the bootstrap UPDATE if the parent does not know the key)."""
        lagging = await self._key_lagging(client)
        if lagging:
            return f"SIG(0) KEY not served yet at {', '.join(lagging)}"
        key = client.ensure_key()
        state = await self._state(client)
        if state == ParentKeyState.TRUSTED:
            return None
        if state != ParentKeyState.UNKNOWN:
            return f"SIG(0) key {key.key_tag} at the parent: {state}"
        if time.monotonic() - self._bootstrap_sent < RESEND_SECONDS:
            return f"the parent is checking SIG(0) key {key.key_tag}"
        found = await client.discover()
        answer = await client.send(key_bootstrap(found.parent, client.zone, key.key_rdata()))
        self._bootstrap_sent, self._key_state = time.monotonic(), None
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
            update = delegation_update(
                found.parent, client.zone,
                ds=None if ds is None else [_ds_rdata(d) for d in ds_sorted],
                ns=None if ns is None else [dns.name.from_text(n) for n in sorted(ns)],
                ttl=_parent_ttl(view))
            answer = await client.send(update)
            self._pushed = (time.monotonic(), what)
            sent = []
            if ds is not None:
                sent.append(f"DS = {', '.join(str(d.key_tag) for d in ds_sorted) or 'none'}")
            if ns is not None:
                sent.append(f"NS = {', '.join(sorted(ns))}")
            return [f"sent UPDATE {'; '.join(sent)} to {answer.server}: NOERROR"]
        except (ParentError, ValueError) as exc:
            return [f"parent UPDATE channel: {exc}"]

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
