"""Following the rollovers a provider starts by itself ("follow" mode), Model 2. Pure.

A signer such as Knot (``type = "rfc2136"``) or deSEC rolls its own keys on its own
schedule and cannot list them by API: the controller reads its keys from the served zone,
and there a key is the signer's own iff a served signature verifies with it. A successor
the signer *pre-publishes* (RFC 7583 sec. 3.3.1: published, not yet signing) carries no
signature yet, so it would look like a foreign key nobody holds, and would be imported
elsewhere only once the signer signs with it: too late, a resolver holding another
provider's DNSKEY RRset could not validate the new signatures. ``claim_successors`` tells
it apart: an unsigned key that no *other* signer holds or ever held (the controller puts
only other signers' keys there) is the signer's own successor, published and not active.
The plan then imports it at every other provider during the signer's pre-publication
window, and the daemon starts a ``follow`` process as soon as the plan is not empty.

Withdrawal needs no rule of its own: ``sync_plan`` drops a foreign key only
``stale_after`` (largest of TTLsig and TTLkey, plus propagation and margin) after it was
last seen as any signer's own. A retired key the signer still publishes counts as its own
until the signer removes it, so the grace counts from after the moment it stopped signing
(RFC 7583 sec. 3.3.1, "Iret"), never before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Set
from datetime import timedelta

from core.keys import Key
from core.observation import ApiKey, ApiZoneState

# A poll interval below this costs requests without making following any safer.
MIN_POLL = timedelta(seconds=1)


def claim_successors(states: Mapping[str, ApiZoneState], by_signature: Set[str],
                     ever_owned: Mapping[Key, Set[str]]) -> dict[str, ApiZoneState]:
    """``states`` with, at each signer in ``by_signature`` (its own keys known only from
    served signatures), every served unsigned key that no other signer holds now or ever
    held, and that is either served by no other signer or was seen held by this one
    before, moved from its foreign keys to its own keys as published, not active."""
    held_now: dict[Key, set[str]] = {}
    imported: dict[Key, set[str]] = {}  # where each key is served as a foreign key
    for name, state in states.items():
        for api_key in state.own_keys:
            held_now.setdefault(api_key.key, set()).add(name)
        for key in state.foreign_dnskeys:
            imported.setdefault(key, set()).add(name)
    out = dict(states)
    for name in sorted(by_signature & states.keys()):
        state = states[name]

        def successor(key: Key, name: str = name) -> bool:
            holders = held_now.get(key, set()) | set(ever_owned.get(key, ()))
            if holders - {name}:
                return False  # another signer's key, now or before
            # Seen as this signer's before, or served nowhere else yet: its own. A key
            # served elsewhere too and never seen held by anyone is a left-over foreign
            # key (from a signer that left before the state database knew it), not a
            # successor: it stays foreign and is withdrawn once stale.
            return name in holders or not imported.get(key, set()) - {name}

        claimed = sorted(key for key in state.foreign_dnskeys if successor(key))
        if not claimed:
            continue
        successors = tuple(
            ApiKey(key=key, role="ksk" if key.sep else "zsk", active=False, published=True,
                   key_id=f"{key.key_tag}-{key.fingerprint}")
            for key in claimed)
        out[name] = dataclasses.replace(
            state, own_keys=(*state.own_keys, *successors),
            foreign_dnskeys=state.foreign_dnskeys - frozenset(claimed))
    return out


def poll_interval(windows: Iterable[timedelta], ttl_key: timedelta,
                  import_time: timedelta) -> timedelta | None:
    """How often to look at the zones so that a new key is imported everywhere within
    each provider's pre-publication window (None: no window known).

    The window ``W`` runs from the provider publishing its successor to it signing with
    it (Knot: ``dnskey-ttl`` + ``propagation-delay``). Within it the controller must see
    the key (up to one poll interval ``P`` late), import it and see it served at every
    other provider (``import_time``), and then every DNSKEY RRset those providers served
    before must leave the caches (``ttl_key``). So ``P <= W - ttl_key - import_time``;
    half of that is taken so that one failed or slow poll still leaves time to spare."""
    limits = [(w - ttl_key - import_time) / 2 for w in windows]
    if not limits:
        return None
    return max(MIN_POLL, min(limits))
