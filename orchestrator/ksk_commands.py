"""``multisigner ksk init ZONE``: make a Model 1 zone's first owner KSK, explicitly.

A first KSK is safe only where nothing can break: no nameserver serves (or recently
served) a KSK for the zone and its parent has no DS (none served, none that resolvers may
still cache). Anywhere else a new key next to an "empty" store means the store is the
wrong one (a typo in the directory, an unmounted volume, another token label, key prefix
or alias), and the zone's real KSK lives elsewhere: making a key there is how a zone loses
the KSK its parent's DS names. So this command refuses, exit 1, nothing changed.

It is the only place a file store's directory is created (0700, its parent must exist).
It prints the new key's DNSKEY and its SHA-256 DS (for a parent that takes DS by hand;
with CDS scanning the first ``sync`` publishes CDS/CDNSKEY). The event is recorded in the
zone's history.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.config import ZoneConfig
from core.errors import Refused, UsageError
from orchestrator.decide.owner_keys import first_key_problems
from orchestrator.observe.observer import observe
from orchestrator.runtime import LEASE_SECONDS, Runtime, holder_id
from providers.kskstore import make_store


@dataclass(frozen=True)
class NewKsk:
    zone: str
    store: str
    key_id: str
    key_tag: int
    dnskey: str  # presentation form, with owner, class and type
    ds: str

    def lines(self) -> list[str]:
        return [f"{self.zone}: generated owner KSK {self.key_tag} (key id {self.key_id}) in "
                f"{self.store}",
                self.dnskey,
                self.ds,
                f"next: 'multisigner sync {self.zone}' signs the zone with it and publishes "
                "CDS/CDNSKEY; register the DS above at the parent if it does not scan CDS"]


def _model1(zone: ZoneConfig) -> None:
    if zone.model != 1 or zone.owner_ksk is None:
        raise UsageError(f"{zone.name} is a model {zone.model} zone: only a model 1 zone has "
                         "an owner KSK ([zones.owner_ksk]); model 2 providers make their own")


async def ksk_init(rt: Runtime, zone: ZoneConfig) -> NewKsk:
    """Make the zone's first owner KSK, or refuse (nothing changed) and say why."""
    _model1(zone)
    assert zone.owner_ksk is not None
    running = rt.store.active_process(zone.name)
    if running is not None:
        raise Refused(f"{zone.name} has a running {running.kind} process {running.id}; "
                      "a first KSK is made only for a zone nothing is being done to")
    with rt.store.lease(zone.name, holder_id(), LEASE_SECONDS):
        view, _ = await observe(rt, zone, api=False)
        problems = first_key_problems(view)
        if problems:
            raise Refused(
                f"{zone.name}: refusing to make an owner KSK; nothing was changed. A new "
                "KSK is made only for a zone that no nameserver serves a KSK for and whose "
                "parent has no DS; this zone's KSK must already be in some store: point "
                "[zones.owner_ksk] at it (a KSK rollover replaces it)", problems)
        with make_store(zone.owner_ksk, create=True) as store:
            held = store.list_keys()
            if held:
                raise Refused(
                    f"{zone.name}: the owner KSK store {store.name} already holds key "
                    f"tag(s) {', '.join(str(k.key_tag) for k in held)}; nothing was "
                    f"changed ('multisigner sync {zone.name}' signs with it)")
            made = store.generate()
            name = store.name
        ds = made.dnskey.ds(zone.name)
        new = NewKsk(zone.name, name, made.key_id, made.key_tag,
                     f"{zone.name} IN DNSKEY {made.dnskey.text}", f"{zone.name} IN DS {ds.text}")
        # under the lease: a history entry for the zone is a fenced write
        rt.store.append_history(zone.name, process_id=None, kind="ksk-init", from_state=None,
                                to_state="generated", actor=rt.actor,
                                reason=f"first owner KSK {made.key_tag} in {name}",
                                evidence={"key_tag": made.key_tag, "key_id": made.key_id,
                                          "dnskey": made.dnskey.text, "ds": ds.text,
                                          "store": name})
    return new
