"""One zone's DSYNC parent, as the engine uses it: the zone's SIG(0) key from its store,
the receiver found by DSYNC (looked up once per client), signed UPDATEs and KeyState
inquiries, and the receiver's own KEY to check its answers (mutual authentication).

    parent = DsyncParent(zone_name, zone.parent, nameservers)
    found = await parent.discover()            # endpoint None: keep to CDS scanning
    key = parent.ensure_key()                  # the zone's SIG(0) key (made if none)
    await parent.send(delegation_update(...))  # UpdateAnswer, or ParentUpdateRefused
    state = await parent.key_state()           # unknown / bootstrapping / trusted / refused
"""

from __future__ import annotations

from collections.abc import Sequence

import dns.name
import dns.rdatatype
import dns.update
from dns.dnssectypes import Algorithm
from dns.rdtypes.ANY.KEY import KEY

from core.config import ParentConfig
from core.sig0 import Sig0Key
from providers.parent.discovery import DsyncDiscovery, ask_parent, discover
from providers.parent.errors import ParentError, ParentUnreachable
from providers.parent.keystate import KeyStateAnswer, query_key_state
from providers.parent.update import UpdateAnswer, send_update
from providers.sig0keys import Sig0KeyStore


class DsyncParent:
    """The parent of ``zone`` reached by DSYNC, with ``config``'s SIG(0) keys."""

    def __init__(self, zone: dns.name.Name, config: ParentConfig,
                 nameservers: Sequence[str], *, timeout: float = 10.0) -> None:
        if config.type != "dsync" or config.sig0_directory is None:
            raise ParentError(f"{zone}: [zones.parent] is not type = \"dsync\"")
        self.zone = zone
        self.nameservers = list(nameservers)
        self.store = Sig0KeyStore(config.sig0_directory)
        self.algorithm = Algorithm[config.sig0_algorithm]
        self.timeout = timeout
        self._found: DsyncDiscovery | None = None

    async def discover(self, *, refresh: bool = False) -> DsyncDiscovery:
        if self._found is None or refresh:
            self._found = await discover(self.zone, self.nameservers,
                                         timeout=min(self.timeout, 5.0))
        return self._found

    def ensure_key(self) -> Sig0Key:
        """The zone's signing key: the oldest in the store (the one the parent learned
        first), made when there is none. A SIG(0) key roll (runbooks/sig0-rollover.toml)
        adds a newer key, has the parent trust it, then retires the oldest from the store,
        so the successor becomes the oldest, and the signing key, only once the parent
        trusts it."""
        keys = self.store.list_keys(self.zone)
        if not keys:
            keys = [self.store.generate(self.zone, self.algorithm)]
        return self.store.load(keys[0].key_id)

    def published_keys(self) -> list[KEY]:
        """The KEY RRset the zone must serve at its apex (every key in the store)."""
        return [k.key for k in self.store.list_keys(self.zone)]

    async def _endpoint(self) -> tuple[DsyncDiscovery, list[KEY]]:
        found = await self.discover()
        if found.endpoint is None:
            raise ParentError(f"{self.zone}: the parent {found.parent} offers no DSYNC "
                              "UPDATE endpoint; its DS follows the CDS instead")
        return found, await self.receiver_keys(found)

    async def receiver_keys(self, found: DsyncDiscovery) -> list[KEY]:
        """The KEY RRset at the DSYNC target, as the parent's nameservers serve it (empty:
        the receiver publishes none, and its answers are taken unsigned)."""
        assert found.endpoint is not None
        response = await ask_parent(self.nameservers, found.endpoint.target, dns.rdatatype.KEY,
                              min(self.timeout, 5.0))
        return [rd for rrset in response.answer if rrset.rdtype == dns.rdatatype.KEY
                and rrset.name == found.endpoint.target for rd in rrset
                if isinstance(rd, KEY)]

    async def send(self, update: dns.update.UpdateMessage, key: Sig0Key | None = None
                   ) -> UpdateAnswer:
        """``update`` signed by ``key`` (default: the zone's signing key)."""
        found, receiver_keys = await self._endpoint()
        assert found.endpoint is not None
        return await send_update(
            update, key or self.ensure_key(), found.addresses, found.endpoint.port,
            receiver_keys=receiver_keys, receiver=found.endpoint.target, timeout=self.timeout)

    async def key_state(self, key: Sig0Key | None = None) -> KeyStateAnswer:
        """What the parent thinks of ``key`` (default: the zone's signing key), asked in
        an inquiry that key signs."""
        found, receiver_keys = await self._endpoint()
        assert found.endpoint is not None
        problems = []
        for address in found.addresses:
            try:
                return await query_key_state(
                    self.zone, key or self.ensure_key(), address, found.endpoint.port,
                    receiver_keys=receiver_keys, receiver=found.endpoint.target,
                    timeout=self.timeout)
            except ParentUnreachable as exc:
                problems.append(str(exc))
        raise ParentUnreachable("; ".join(problems))
