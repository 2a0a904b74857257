"""Which owner KSKs and provider ZSKs the owner-signed combined set holds. Pure.

Also the safety rule for the owner's key store: the controller signs only with a KSK the
parent and the resolvers already trust, and makes a first KSK only where nothing can
break (no signer serves an owner KSK and the parent has no DS).

Why a store is checked against the zone, not trusted: a wrong ``[zones.owner_ksk]``
(a typo in the directory, an unmounted volume, another token label, key prefix or alias)
looks exactly like an empty or different store. Signing the combined set with a key from
it replaces the KSK the parent's DS names and the zone goes bogus for every validating
resolver. So before signing, the store must hold

- every KSK any nameserver serves (in Model 1 every served KSK is the owner's; one a
  provider holds itself is a fault of its own, reported by name, and refused as well), and
- for every DS RRset resolvers may use (each parent server's, and each one seen within
  its TTL), at least one key it names. "At least one", not "every": a DS for a key long
  gone (registries keep stale records) does not break validation, while refusing to
  re-sign would, once the served signatures expire.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from core.keys import Digest, Key
from core.observation import ZoneView
from orchestrator.decide.owner_signing import Model1Target, owner_keys_in_use
from orchestrator.decide.rollover import OWNER, Rolled
from runbooks import Step


def zsks_of(view: ZoneView, signers: Iterable[str]) -> dict[str, frozenset[Key]]:
    """Each signer's published ZSKs, from its API."""
    return {name: frozenset(k.key for k in view.api[name].own_keys
                            if k.published and not k.key.sep) for name in signers}


def served_owner_ksks(view: ZoneView) -> frozenset[Key]:
    """Every KSK some nameserver serves now. In Model 1 providers hold no KSK, so these are
    the owner's; a KSK a provider's API claims as its own is still in here (the safe side:
    a misbehaving provider, or an adapter that lists the imported owner KSK as the
    provider's, must never make the check pass); :func:`provider_claimed` tells them
    apart for the message."""
    return frozenset(k for s in view.servers if s.ok for k in s.keys if k.sep)


def provider_claimed(view: ZoneView) -> dict[Key, str]:
    """KSKs (SEP keys) a provider's API reports as its own, and which provider."""
    return {k.key: name for name, state in sorted(view.api.items())
            for k in state.own_keys if k.key.sep}


def ds_sets(view: ZoneView) -> list[tuple[frozenset[Digest], str]]:
    """Every non-empty DS RRset a resolver may hold: each parent server's now, and each one
    seen within its TTL; with where it comes from."""
    seen: dict[frozenset[Digest], str] = {}
    for parent in view.parent:
        if parent.error is None and parent.ds_set:
            seen.setdefault(parent.ds_set, f"served by the parent ({parent.server})")
    for cached in view.cached_ds:
        ds = frozenset(Digest.from_rdata(rd) for rd in cached.rrset)
        if ds:
            seen.setdefault(ds, f"cached from the parent ({cached.server})")
    return list(seen.items())


def ds_tags(view: ZoneView) -> list[int]:
    """The key tags the DS RRsets of :func:`ds_sets` name."""
    return sorted({d.key_tag for ds, _ in ds_sets(view) for d in ds})


def _named(ds: frozenset[Digest], keys: Iterable[Key], zone: str) -> frozenset[Key]:
    return frozenset(k for k in keys if any(d.matches(k, zone) for d in ds))


def _tags(keys: Iterable[Key]) -> str:
    return ", ".join(str(t) for t in sorted({k.key_tag for k in keys})) or "none"


def store_problems(view: ZoneView, stored: frozenset[Key], store_name: str) -> list[str]:
    """Why signing with this store would break the chain of trust (see the module
    docstring): a served KSK, or every key a DS RRset names, missing from the store; or,
    with nothing served and the parent unseen, no way to tell. Empty when it is safe."""
    zone = view.zone.to_text()
    served = served_owner_ksks(view)
    out: list[str] = []
    claimed = provider_claimed(view)
    for key in sorted(served - stored):
        if key in claimed:
            out.append(f"KSK {key.key_tag} is served, and {claimed[key]} reports it as its "
                       "own: a Model 1 provider must hold no KSK (remove it there)")
        else:
            out.append(f"the zone serves owner KSK {key.key_tag}, which the store does not "
                       "hold")
    for ds, origin in ds_sets(view):
        if not _named(ds, stored, zone):
            out.append(f"the DS RRset {origin} names key tag(s) "
                       f"{', '.join(sorted({str(d.key_tag) for d in ds}))}, none of them in "
                       "the store")
    unseen = not any(p.error is None for p in view.parent)
    if stored and not served and unseen and not view.cached_ds:
        out.append("nothing serves an owner KSK and the parent did not answer, so it "
                   "cannot be told whether the store holds the KSK the parent's DS names")
    if not out:
        return []
    return [f"the owner KSK store {store_name} holds key tag(s) {_tags(stored)}; the zone "
            f"serves owner KSK tag(s) {_tags(served)}; the parent's DS names key tag(s) "
            f"{', '.join(str(t) for t in ds_tags(view)) or 'none'}", *out,
            "signing with another key would make the zone bogus: point [zones.owner_ksk] at "
            "the store that holds the served KSK (check the directory, token label, key "
            "prefix or alias), then run the command again"]


def first_key_problems(view: ZoneView) -> list[str]:
    """Why a first owner KSK could break something here (empty: it cannot). Only a zone
    nobody can validate yet qualifies: no nameserver serves a KSK now, none was seen within
    its TTL, every parent server answered and none has a DS, and no DS RRset can still be
    cached. A nameserver that does not answer counts as serving nothing: without a DS no
    resolver validates the zone, whatever it serves."""
    out = []
    served = served_owner_ksks(view)
    if served:
        out.append(f"the zone serves KSK(s) {_tags(served)}")
    cached = {k for c in view.cached_dnskeys for rd in c.rrset
              for k in (Key.from_rdata(rd),) if k.sep}
    if cached - served:
        out.append(f"KSK(s) {_tags(cached - served)} were served within their TTL and may "
                   "still be cached")
    if ds_sets(view):
        out.append(f"the parent's DS names key tag(s) {', '.join(map(str, ds_tags(view)))}")
    if not view.parent:
        out.append("the parent was not looked at")
    for parent in view.parent:
        if parent.error is not None:
            out.append(f"the parent server {parent.server} did not answer ({parent.error}), "
                       "so it cannot be told that it has no DS")
    return out


def may_create_first_key(view: ZoneView) -> bool:
    """A first owner KSK can break nothing (:func:`first_key_problems` is empty)."""
    return not first_key_problems(view)


def choose_owner_keys(view: ZoneView, stored: list[tuple[Key, datetime | None, str]]
                      ) -> frozenset[Key]:
    """Steady state: the stored KSKs served now. With none served (no provider serves a
    signed set yet): the stored keys the parent's DS names, so a leftover key (a discarded
    rollover successor) never replaces the trusted one; with no DS either, the newest.
    ``stored``: (DNSKEY, created, store key id) of every key in the owner's store."""
    in_use = owner_keys_in_use(view, (k for k, _, _ in stored))
    if in_use or not stored:
        return in_use
    zone = view.zone.to_text()
    trusted = frozenset().union(*(_named(ds, (k for k, _, _ in stored), zone)
                                  for ds, _ in ds_sets(view)))
    if trusted:
        return trusted
    newest = max(stored, key=lambda s: (s[1] or datetime.min.replace(tzinfo=UTC), s[2]))
    return frozenset({newest[0]})


def _state_of(step: Step, which: str) -> str:
    """A key the step does not mention keeps signing (it was made active earlier)."""
    return step.keys.get(which, "active")  # type: ignore[call-overload,no-any-return]


def step_target(zone: str, step: Step | None, rolled: Rolled | None, view: ZoneView,
                steady_owner: frozenset[Key], key_signers: Iterable[str]) -> Model1Target:
    """The combined set the owner signs in this step (or in the steady state)."""
    zsks = zsks_of(view, key_signers)
    if step is None or rolled is None or rolled.signer != OWNER:
        return Model1Target(zone, steady_owner, steady_owner, steady_owner, zsks)
    keys = {"old": rolled.old, "new": rolled.new}
    owner = {k for w, k in keys.items() if k is not None and _state_of(step, w) != "removed"}
    signing = {k for w, k in keys.items() if k is not None and _state_of(step, w) == "active"}
    named = rolled.new if step.cds == "new" else rolled.old
    cds = {named} if named is not None and named in owner else set(owner)
    return Model1Target(zone, frozenset(owner), frozenset(signing), frozenset(cds), zsks)
