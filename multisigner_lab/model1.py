"""The Model 1 lab: the zone owner holds the one KSK, Knot DNS providers hold their ZSKs.

What runs (all on random loopback addresses, all stopped by :meth:`Model1Lab.stop`):

- the signed PowerDNS parent ``test.`` (as in :class:`lab.Lab`), delegating
  every child zone to every Knot instance -- or, with ``delegated=[...]``, to those only --
  (``ns1.kN.test.``; an A record for every Knot either way) with a SHA-256 DS of the zone's
  owner KSK: the owner registered it;
- N Knot DNS 3.2 instances ``k0..k{n-1}`` (:mod:`lab.knot`), each on its own
  loopback address, serving every child zone in offline-KSK mode with a pregenerated ZSK,
  the zone's apex NS RRset naming the delegated Knots.
  **Until the first SKR is imported a zone does not load and Knot answers SERVFAIL for
  it** (docs/lab.md, "Knot DNS"): the controller's first sync brings it up;
- the owner KSK store, one KSK per zone generated in it (:mod:`lab.ownerksk`: a SoftHSM2
  token, or a key directory per zone);
- the parent agent scanning CDS/CSYNC (:mod:`multisigner_lab.parent_automation`; it finds
  the Knot instances through ``lab.json`` like PowerDNS providers: name, ``ns_name``,
  address, ``dns_port``);
- Unbound, trusting the parent's KSK, with a stub zone per child listing every Knot.

``DIR/multisigner.toml`` (0600) configures every Knot as a provider and every zone as
``model = 1`` signed by the delegated Knots (all by default), with ``[zones.owner_ksk]``
pointing at the store (pkcs11: module, token, literal PIN, ``module_env = {SOFTHSM2_CONF
= ...}``) and short signature times (validity 60 s, refresh 30 s) so re-signing can be
watched. ``DIR/lab.json`` has the shape of
:class:`~lab.Lab`'s (plus ``"model": 1``), so ``Lab.load(DIR).stop()`` and
``multisigner lab down`` stop this lab too.

With ``delegated=["k0", "k1"]`` (say, of three) the other Knots have the zone configured
(offline-KSK, their own ZSK) but are neither in the delegation, nor in any Knot's apex NS
RRset, nor among the zone's ``signers``: ready to join (``multisigner signer add``). Like
every Knot before its first SKR they answer SERVFAIL for the zone until the controller
delivers one -- a ``sync`` delivers to the signers only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from core.owner_ksk import DEFAULT_PKCS11_MODULE
from multisigner_lab import config, provision, zones
from multisigner_lab.base import LabBase, check_delegated, fqdn
from multisigner_lab.errors import LabError
from multisigner_lab.knot import KnotInstance
from multisigner_lab.lab import DEFAULT_ZONES
from multisigner_lab.ownerksk import KEY_DIR, SOFTHSM_DIR, TOKEN_LABEL, OwnerKsks, Store
from multisigner_lab.server import Endpoint
from providers.kskstore import StoredKey

__all__ = ["KEY_DIR", "SOFTHSM_DIR", "TOKEN_LABEL", "KnotServer", "Model1Lab", "Store"]


@dataclass(frozen=True)
class KnotServer(Endpoint):
    """What a test needs to know about one Knot provider of the lab."""

    conf_path: Path  # knot.conf: ``-c`` for knotc/keymgr, ``knot_config`` in the config
    dir: Path

    @property
    def port(self) -> int:
        return self.dns_port

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KnotServer:
        return cls(**cls.fields(data), conf_path=Path(data["conf"]), dir=Path(data["dir"]))


class Model1Lab(LabBase[KnotServer]):
    """A running (or recorded) Model 1 lab. Build with :meth:`start` or :meth:`load`."""

    # ----------------------------------------------------------------- life cycle

    @classmethod
    def start(
        cls,
        directory: Path,
        providers: int = 2,
        zones: Sequence[str] = DEFAULT_ZONES,
        ttl: int = 2,
        *,
        ds_ttl: int = 2,
        store: Store = "pkcs11",
        scanner: bool = True,
        unbound: bool = True,
        scanner_interval: float = 0.5,
        rrsig_lifetime: str = "14d",
        rrsig_refresh: str = "7d",
        pkcs11_module: str = DEFAULT_PKCS11_MODULE,
        delegated: Sequence[str] | None = None,
        dnskey_ttl: int | None = None,
        ns_ttl: int | None = None,
    ) -> Model1Lab:
        """Start a Model 1 lab in ``directory`` (created if missing). On any failure,
        whatever was already started is stopped before the error propagates.

        ``rrsig_lifetime``/``rrsig_refresh``: Knot's own signatures (over zone data, made
        with its ZSK); the owner's over the key RRsets come with each SKR. ``delegated``:
        the Knots the zones are delegated to at first (default: all; any non-empty subset,
        the parent's DS names the owner KSK whoever serves): the parent's NS RRsets, every
        Knot's apex NS RRset and the zones' ``signers`` name only them.

        TTLs as in :meth:`Lab.start`: ``ttl`` the zone data (SOA included), ``dnskey_ttl``
        the DNSKEY RRset (Knot's ``dnskey-ttl``, which its KSR asks the owner for, and the
        SOA minimum; default ``ttl``), ``ds_ttl`` the parent's DS, ``ns_ttl`` the parent's
        NS RRsets for the children (default ``ttl``). ``scanner``: whether the parent agent
        runs, as in :meth:`Lab.start` (the parent's first DS names the owner KSK either
        way)."""
        if providers < 1:
            raise LabError("a Model 1 lab needs at least one Knot provider")
        initial = check_delegated([f"k{i}" for i in range(providers)], delegated, "")
        if store not in ("pkcs11", "file"):
            raise LabError(f"store must be 'pkcs11' or 'file', not {store!r}")
        lab, zone_names = cls._new(directory, zones, model=1)
        settings = {
            "ttl": ttl,
            "ds_ttl": ds_ttl,
            "ns_ttl": ttl if ns_ttl is None else ns_ttl,
            "dnskey_ttl": ttl if dnskey_ttl is None else dnskey_ttl,
            "delegated": initial,  # at start; lab.delegated(zone) asks the parent
            "zones": zone_names,
            "scanner_interval": scanner_interval,
        }
        owner = OwnerKsks(lab.directory, zone_names, store, pkcs11_module)
        knot = partial(lab._start_knot, rrsig_lifetime=rrsig_lifetime, rrsig_refresh=rrsig_refresh)

        def build() -> None:
            lab._build(providers, owner, knot)
            lab._start_services(agent=scanner, unbound=unbound)

        return lab._build_or_stop(build, settings)

    def _build(self, n: int, owner: OwnerKsks, knot: partial[KnotInstance]) -> None:
        """The parent, the Knots and the owner's KSKs at once, then the parent zone with
        the owner KSKs' DS, then the config."""
        names = [f"k{i}" for i in range(n)]
        jobs: list[Callable[[], Any]] = [partial(self._start_powerdns, "parent")]
        jobs += [partial(knot, m) for m in names]
        results = self._concurrently([*jobs, owner.create])
        knots: list[KnotInstance] = results[1 : 1 + n]
        keys: dict[str, StoredKey] = results[-1]
        ds = {z: [zones.ds_text(z, keys[z].dnskey.text)] for z in self.zones}
        self._provision_parent(results[0], {k.name: k.address for k in knots}, ds)
        self.state["providers"] = [
            {
                **k.to_json(),
                "type": "knot",
                "ns_name": zones.ns_name(k.name),
                "algorithm": provision.DEFAULT_ALGORITHM,
            }
            for k in knots
        ]
        self.state["owner_ksk"] = {
            "store": owner.store,
            **owner.describe(),
            "keys": {
                z: {"key_id": k.key_id, "dnskey": k.dnskey.text, "ds": ds[z][0]}
                for z, k in keys.items()
            },
        }
        self._save()
        text = config.config_toml(
            self.directory,
            self.state["providers"],
            self.zones,
            self.parent.nameserver,
            signers=self.initially_delegated,
            owner_ksk=owner.toml_lines,
        )
        config.write_private(self.config_path, text)

    def _start_knot(self, name: str, *, rrsig_lifetime: str, rrsig_refresh: str) -> KnotInstance:
        """Knot ``name`` in ``DIR/name``, serving every zone, registered for stop()."""
        instance = KnotInstance.create(
            name,
            self.directory / name,
            zones=self.zones,
            ttl=self.ttl,
            dnskey_ttl=self.dnskey_ttl,
            ns_names=[zones.ns_name(k) for k in self.state["delegated"]],
            rrsig_lifetime=rrsig_lifetime,
            rrsig_refresh=rrsig_refresh,
        )
        if instance.rundir is not None and not instance.rundir.is_relative_to(instance.dir):
            self._add(socket_dir=instance.rundir)  # long lab path: removed on stop
        try:
            instance.start()
        finally:
            if instance.process is not None:
                self._add(process=instance.process)
        return instance

    @classmethod
    def _check_state(cls, directory: Path, state: dict[str, Any]) -> None:
        """:meth:`load` takes a Model 1 lab's state only."""
        if state.get("model") != 1:
            raise LabError(f"the lab in {directory} is not a Model 1 lab (use Lab.load)")

    # ----------------------------------------------------------------- what tests use

    @property
    def model(self) -> int:
        return 1

    @property
    def providers(self) -> list[KnotServer]:
        """The Knot instances, ``k0`` first."""
        return [KnotServer.from_json(p) for p in self.state.get("providers", [])]

    def provider(self, name: str) -> KnotServer:
        for k in self.providers:
            if k.name == name:
                return k
        raise LabError(f"no Knot provider {name!r} in the lab (have k0..)")

    @property
    def store(self) -> Store:
        kind: Store = self.state["owner_ksk"]["store"]
        return kind

    def owner_ksk(self, zone: str) -> tuple[str, str]:
        """(store key id, DNSKEY text) of the owner KSK the lab made for ``zone``, whose DS
        it registered at the parent."""
        key = self.state["owner_ksk"]["keys"][fqdn(zone)]
        return str(key["key_id"]), str(key["dnskey"])
