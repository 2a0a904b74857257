"""Which owner KSKs and provider ZSKs the owner-signed combined set holds. Pure.

Also the safety rule for the owner's key store: the controller signs only with a KSK the
parent and the resolvers already trust, and makes a first KSK only where nothing can
break (no signer serves an owner KSK and the parent has no DS)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from core.keys import Key
from core.observation import ZoneView
from orchestrator.decide.owner_signing import Model1Target, owner_keys_in_use
from orchestrator.decide.rollover import OWNER, Rolled
from runbooks import Step


def zsks_of(view: ZoneView, signers: Iterable[str]) -> dict[str, frozenset[Key]]:
    """Each signer's published ZSKs, from its API."""
    return {name: frozenset(k.key for k in view.api[name].own_keys
                            if k.published and not k.key.sep) for name in signers}


def served_owner_ksks(view: ZoneView) -> frozenset[Key]:
    """Every KSK some signer serves: in Model 1 providers hold no KSK, so these are the
    owner's (or an impostor's)."""
    return frozenset(k for s in view.servers if s.ok for k in s.keys if k.sep)


def choose_owner_keys(view: ZoneView, stored: list[tuple[Key, datetime | None, str]]
                      ) -> frozenset[Key]:
    """Steady state: the stored KSKs served now; on first use, the newest stored one.
    ``stored``: (DNSKEY, created, store key id) of every key in the owner's store."""
    in_use = owner_keys_in_use(view, (k for k, _, _ in stored))
    if in_use or not stored:
        return in_use
    newest = max(stored, key=lambda s: (s[1] or datetime.min.replace(tzinfo=UTC), s[2]))
    return frozenset({newest[0]})


def store_problems(view: ZoneView, stored: frozenset[Key], store_name: str) -> list[str]:
    """Why signing with this store would break the chain of trust: a served owner KSK, or a
    key the parent's DS names, that the store does not hold."""
    zone = view.zone.to_text()
    served = served_owner_ksks(view)
    parent = frozenset(d for p in view.parent if p.error is None for d in p.ds_set)
    named_ok = not parent or any(d.matches(k, zone) for d in parent for k in stored)
    unknown = sorted(k.key_tag for k in served - stored)
    if not unknown and named_ok:
        return []
    return [f"the owner KSK store {store_name} holds "
            f"{', '.join(str(k.key_tag) for k in sorted(stored)) or 'no key'}; the zone serves "
            f"owner KSK(s) {', '.join(str(k.key_tag) for k in sorted(served)) or 'none'} and "
            f"the parent's DS names key tag(s) "
            f"{', '.join(sorted({str(d.key_tag) for d in parent})) or 'none'}. Signing with "
            "another key would make the zone bogus: point [zones.owner_ksk] at the store that "
            "holds the served KSK (check the directory, token label, key prefix or alias)"]


def may_create_first_key(view: ZoneView) -> bool:
    """A first owner KSK can break nothing only while no signer serves one and the parent
    has no DS for the zone."""
    no_ds = all(p.error is None and not p.ds_set for p in view.parent)
    return not served_owner_ksks(view) and no_ds


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
