"""The ``route53domains`` parent channel: the controller sets the DS at the registrar
(Amazon Route 53 Domains), then observes it at the parent's nameservers like every other
parent channel.

The registrar takes DNSKEYs (flags, algorithm, public key) and lists the DS records it
holds by digest, so what to change is computed key by key: a wanted KSK no registrar DS
names is *associated*; a registrar DS naming no wanted KSK is *disassociated*. Every
association is made, and has finished SUCCESSFUL, before anything is removed, and the
removal starts only once the registrar lists a DS for every wanted KSK: the domain is
never left without a DS for a KSK its signers serve. Each operation is awaited (up to
``operation_wait`` seconds here; one still running then is followed up on the next look)
and a FAILED or ERROR one stops the step with the registrar's message. A step that wants
no DS at all is refused: making a domain insecure is not done behind the operator's back.
A step that changes the parent's NS RRset (signer add/remove) has the registrar replace the
domain's name servers in one operation (``UpdateDomainNameservers``).

The engine calls ``nudge`` from an ``observe`` phase, on its full reads only, when the step
waits for the parent and for nothing else, as for ``dsync``. The registrar is asked again
at most every RECHECK_SECONDS once it holds what the step wants (the registry then takes
its time to publish, which the engine observes).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from core.config import ZoneConfig
from core.errors import ProviderError, ProviderUnreachable, Refused
from core.keys import Key, parent_follows, tag_label
from core.observation import ZoneView
from orchestrator.runtime import Runtime
from providers.registrar import (
    UNKNOWN,
    Operation,
    OperationInProgress,
    RegistrarDs,
    Route53Domains,
    make_client,
)

# How long one nudge waits for a registrar operation before following it up later.
OPERATION_WAIT_SECONDS = 60.0
# Once the registrar holds the wanted DS, how long before it is asked again.
RECHECK_SECONDS = 300.0


@dataclass(frozen=True)
class _Pending:
    operation: str
    what: str


@dataclass
class Route53DomainsChannel:
    """The registrar parent of one zone (made once per zone by the engine). ``registrar``
    is made from the zone's config on first use unless given (tests)."""

    rt: Runtime
    zone: ZoneConfig
    registrar: Route53Domains | None = None
    operation_wait: float = OPERATION_WAIT_SECONDS
    _pending: _Pending | None = None
    _settled: tuple[float, frozenset[Key]] | None = field(default=None)
    _ns_settled: tuple[float, frozenset[str]] | None = field(default=None)

    @property
    def domain(self) -> str:
        return self.zone.parent.registered_domain(self.zone.name)

    def client(self) -> Route53Domains:
        if self.registrar is None:
            self.registrar = Route53Domains(make_client(self.zone.parent), self.domain,
                                            zone=self.zone.name)
        return self.registrar

    async def publish_key(self, view: ZoneView) -> list[str]:
        """Nothing to publish at the signers: the registrar needs no key of the zone's."""
        return []

    def inquiry_due(self) -> bool:
        """No inquiry between the engine's full reads: a registrar operation is awaited
        within ``nudge`` itself."""
        return False

    async def nudge(self, want_ds: frozenset[Key] | None, want_ns: frozenset[str] | None,
                    view: ZoneView) -> list[str]:
        """Set at the registrar the DS (and NS) the step wants and the parent's servers do
        not serve (see the module doc); what was sent (lines starting "sent", for the
        history) or what stands in the way. A denied call, an unknown domain or a failed
        operation raises: the step cannot go on."""
        ns = want_ns is not None and any(p.error is not None or p.ns != want_ns
                                         for p in view.parent)
        ds = want_ds is not None and not (view.parent and all(
            p.error is None and parent_follows(p.ds_set, want_ds, self.zone.name)
            for p in view.parent))
        if not ns and not ds:
            return []
        said: list[str] = []
        try:
            said += await self._follow_up()
            if ds and want_ds is not None and self._pending is None:
                said += await self._set_ds(want_ds)
            if ns and want_ns is not None and self._pending is None:
                said += await self._set_ns(want_ns)
        except (OperationInProgress, ProviderUnreachable) as exc:
            said.append(f"registrar: {exc}")
        return said

    async def _follow_up(self) -> list[str]:
        """The operation a former look left running: its state now (forgotten once it
        has finished, or once the registrar no longer reports it)."""
        if self._pending is None:
            return []
        found = await self.client().operation(self._pending.operation)
        what = self._pending.what
        if found.finished or found.status == UNKNOWN:
            self._pending = None
            self._check(found, what)  # UNKNOWN: the registrar's records, read next, tell
        return [f"registrar: {what}: {found.describe()}"]

    async def _set_ds(self, want: frozenset[Key]) -> list[str]:
        if not want:
            raise Refused(f"{self.zone.name}: the step wants no DS at the parent; the "
                          "route53domains channel does not remove a domain's last DS "
                          "(that makes it insecure): disassociate it at the registrar by "
                          "hand if that is meant")
        registrar = self.client()
        said: list[str] = []
        if self._settled is not None and self._settled[1] == want and \
                time.monotonic() - self._settled[0] < RECHECK_SECONDS:
            return [self._holds(want)]
        held = await registrar.ds_records()
        adds = sorted(k for k in want if not any(r.names(k, self.zone.name) for r in held))
        for key in adds:
            what = (f"ADD_DNSSEC for KSK {tag_label(key, want)} (DS "
                    f"{key.ds(self.zone.name).text}) at Route 53 Domains for {self.domain}")
            done = await self._run(await registrar.associate(key), what)
            said.append(f"sent {what}: {done.describe()}")
            if not done.finished:
                return said
        if adds:  # a SUCCESSFUL association is checked, not assumed
            held = await registrar.ds_records()
        return said + await self._remove(registrar, want, held)

    async def _remove(self, registrar: Route53Domains, want: frozenset[Key],
                      held: list[RegistrarDs]) -> list[str]:
        """Disassociate every registrar DS (of ``held``, read after the associations)
        naming no wanted KSK, once the registrar lists a DS for each wanted one."""
        lacking = [k for k in want if not any(r.names(k, self.zone.name) for r in held)]
        if lacking:
            return [f"registrar: Route 53 Domains does not list a DS for KSK(s) "
                    f"{', '.join(tag_label(k, want) for k in sorted(lacking))} yet; "
                    "nothing is removed before it does"]
        said = [f"registrar: {r.describe()} (id {r.id}) names no key it knows, left alone"
                for r in held if not r.identified]
        for ds in (r for r in held if r.identified
                   and not any(r.names(k, self.zone.name) for k in want)):
            what = (f"REMOVE_DNSSEC of {ds.describe()} (id {ds.id}) at Route 53 Domains for "
                    f"{self.domain}")
            done = await self._run(await registrar.disassociate(ds.id), what)
            said.append(f"sent {what}: {done.describe()}")
            if not done.finished:
                return said
        self._settled = (time.monotonic(), want)
        return said or [self._holds(want)]

    async def _set_ns(self, want: frozenset[str]) -> list[str]:
        """Replace the domain's name servers with the wanted set (one operation: no
        moment without name servers). A name inside the domain needs glue: the addresses
        the registrar holds for it are kept; a new one without them is refused."""
        names = ", ".join(sorted(want))
        listed = (f"Route 53 Domains lists name servers {names}; waiting for the registry "
                  "to publish them")
        if self._ns_settled is not None and self._ns_settled[1] == want and \
                time.monotonic() - self._ns_settled[0] < RECHECK_SECONDS:
            return [listed]
        registrar = self.client()
        have = await registrar.nameservers()
        if set(have) == set(want):
            self._ns_settled = (time.monotonic(), want)
            return [listed]
        glueless = [n for n in sorted(want) if not have.get(n) and
                    (n == self.zone.name or n.endswith("." + self.zone.name))]
        if glueless:
            raise Refused(f"{self.zone.name}: name server(s) {', '.join(glueless)} lie inside "
                          f"{self.domain} and need glue addresses, which the registrar does "
                          "not hold for them; set the name servers with their addresses at "
                          "the registrar")
        what = f"UPDATE_NAMESERVER to {names} at Route 53 Domains for {self.domain}"
        done = await self._run(await registrar.set_nameservers(
            {n: have.get(n, []) for n in want}), what)
        return [f"sent {what}: {done.describe()}"]

    async def _run(self, operation: str, what: str) -> Operation:
        """Wait for an operation just submitted. One still running, or whose status could
        not be read, is remembered and followed up on the next look."""
        self._pending = _Pending(operation, what)
        try:
            done = await self.client().wait(operation, self.operation_wait)
        except ProviderUnreachable as exc:
            return Operation(operation, "UNCONFIRMED", f"its status could not be read: {exc}")
        if done.finished:
            self._pending = None
            self._check(done, what)
        return done

    def _check(self, done: Operation, what: str) -> None:
        if done.finished and not done.ok:
            self._settled = self._ns_settled = None
            raise ProviderError(f"{what}: {done.describe()}; the registrar did not make the "
                                "change; the step stays where it is (fix the cause, then "
                                "re-run)", provider="route53domains", zone=self.zone.name,
                                endpoint="GetOperationDetail")

    def _holds(self, want: frozenset[Key]) -> str:
        return (f"Route 53 Domains holds the DS for KSK(s) "
                f"{', '.join(tag_label(k, want) for k in sorted(want))}; waiting for the "
                "registry to publish it")

