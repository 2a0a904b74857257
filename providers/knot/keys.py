"""Knot's own keys of a zone (in Model 1: ZSKs only): listed with their timers, their
DNSKEYs, and created, switched and deleted with ``keymgr``.

Facts this relies on (Knot 3.2.6, verified):

* ``keymgr ZONE list`` answers exit 0 and nothing for a zone Knot does not know; only
  ``knotc zone-status ZONE`` ("no such zone found") tells a missing zone apart.
* A key's id is the SHA-1 of its public key (SubjectPublicKeyInfo DER): an id names one
  public key for good.
* ``keymgr delete`` deletes at once, whatever the timers; a timer change is seen by knotd
  only after ``zone-keys-load``.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import time
from collections.abc import Sequence

import dns.dnssec
import dns.exception

from core.keys import Key, Role
from core.observation import ApiKey
from providers.knot.commands import KnotCommands
from providers.knot.timers import KnotKey, flags_match, timer_changes
from providers.knot.transactions import ZoneTransactions

# Key sizes keymgr wants with an explicit algorithm (ECDSA/EdDSA sizes are fixed).
_KEY_SIZE = {5: 2048, 7: 2048, 8: 2048, 10: 2048, 13: 256, 14: 384, 15: 256, 16: 456}


class KnotKeys:
    """The KASP keys of one Knot provider's zones, with a cache of their DNSKEYs."""

    def __init__(self, commands: KnotCommands, transactions: ZoneTransactions) -> None:
        self._cmd = commands
        self._tx = transactions
        self.public: dict[str, dict[str, Key]] = {}  # zone -> key id -> DNSKEY

    async def list_keys(self, zone: str) -> list[KnotKey]:
        """Knot's keys of ``zone`` with their timers (``keymgr -j ZONE list``)."""
        text = await self._cmd.run("keymgr", zone, "list", zone=zone, options=["-j"])
        try:
            return [KnotKey.from_json(item) for item in json.loads(text or "[]")]
        except (ValueError, KeyError, TypeError) as exc:
            raise self._cmd.error(
                f"unexpected keymgr -j list output ({exc.__class__.__name__}: {exc})",
                zone=zone, endpoint=f"keymgr -j {zone} list",
            ) from None

    async def find(self, zone: str, key_id: str) -> KnotKey | None:
        return next((k for k in await self.list_keys(zone) if k.id == key_id), None)

    async def public_keys(self, zone: str, keys: Sequence[KnotKey]) -> list[Key]:
        """The DNSKEY of each key, ``keymgr dnskey`` only for those not seen before.

        An id names one public key for good; only the flags could change (KSK bit,
        revoke), and a cached DNSKEY is used only while they match what ``list`` says.
        Saves one keymgr run per key per read, which is most of an idle Knot read's
        cost."""
        now = time.time()
        cache = self.public.setdefault(zone, {})
        for stale in set(cache) - {k.id for k in keys}:  # deleted keys: forget them
            del cache[stale]

        async def one(k: KnotKey) -> Key:
            known = cache.get(k.id)
            if known is not None and flags_match(known, k, now):
                return known
            cache[k.id] = public = await self.dnskey(zone, k.id)
            return public

        return list(await asyncio.gather(*(one(k) for k in keys)))

    async def dnskey(self, zone: str, key_id: str) -> Key:
        text = await self._cmd.run("keymgr", zone, "dnskey", f"id={key_id}", zone=zone)
        # "example.test. DNSKEY 256 3 13 base64"
        parts = text.split()
        try:
            at = [p.upper() for p in parts].index("DNSKEY")
            return Key.parse(" ".join(parts[at + 1 :]))
        except (ValueError, IndexError, dns.exception.DNSException) as exc:
            raise self._cmd.error(
                f"unexpected keymgr dnskey output {text.strip()[:120]!r} ({exc})",
                zone=zone, endpoint=f"keymgr {zone} dnskey id={key_id}",
            ) from None

    async def api_keys(self, zone: str, keys: Sequence[KnotKey]) -> list[ApiKey]:
        now = time.time()
        publics = await self.public_keys(zone, keys)
        return [
            ApiKey(key=public, role=k.role, active=k.active_at(now),
                   published=k.published_at(now), key_id=k.id)
            for k, public in zip(keys, publics, strict=True)
        ]

    async def create(
        self, zone: str, role: Role, algorithm: str, *, active: bool, published: bool
    ) -> ApiKey:
        """A new ZSK (``keymgr ZONE generate ksk=no zsk=yes ...``). Timers: publish and
        active ``+0`` when asked for, else unset (0 = never; no surprise activation later).
        Only ZSKs: in Model 1 the zone owner holds the KSK."""
        if role != "zsk":
            raise self._cmd.error(
                f"cannot create a {role.upper()}: Knot in offline-KSK mode (Model 1) holds "
                "only ZSKs; the zone owner holds the KSK", zone=zone)
        if active and not published:
            raise self._cmd.error(
                "refusing an active but unpublished ZSK: its signatures could not validate",
                zone=zone)
        number = algorithm_number(algorithm)
        args = [zone, "generate", "ksk=no", "zsk=yes", f"algorithm={number}",
                f"publish={'+0' if published else '0'}", f"active={'+0' if active else '0'}"]
        if number in _KEY_SIZE:
            args.append(f"size={_KEY_SIZE[number]}")
        out = await self._cmd.run("keymgr", *args, zone=zone)
        key_id = next((w for w in out.split() if len(w) == 40), "")
        if not key_id:
            raise self._cmd.error(f"keymgr generate printed no key id: {out.strip()[:120]!r}",
                                  zone=zone, endpoint=shlex.join(["keymgr", *args]))
        public = await self.dnskey(zone, key_id)
        self.public.setdefault(zone, {})[key_id] = public
        if active:
            await self._tx.load_keys(zone)
        return ApiKey(key=public, role="zsk", active=active, published=published, key_id=key_id)

    async def set_state(self, zone: str, key_id: str, *, active: bool, published: bool) -> None:
        """Set timers so the key is (not) published / (not) signing from now on, and clear
        future timers that would change that state later (the controller owns the
        schedule). Idempotent: nothing is run when the key is already in that state."""
        endpoint = f"keymgr {zone} set id={key_id}"
        if active and not published:
            raise self._cmd.error(
                "refusing to make a ZSK sign while unpublished: its signatures could not "
                "validate", zone=zone, endpoint=endpoint)
        key = await self.find(zone, key_id)
        if key is None:
            raise self._cmd.error(f"no key with id {key_id} in Knot's KASP database",
                                  zone=zone, endpoint=f"keymgr {zone} list")
        changes = timer_changes(key, time.time(), active=active, published=published)
        if not changes:
            return
        await self._cmd.run("keymgr", zone, "set", f"id={key_id}",
                            *(f"{name}={value}" for name, value in changes.items()), zone=zone)
        await self._tx.load_keys(zone)

    async def delete(self, zone: str, key_id: str) -> None:
        """``keymgr ZONE delete id=ID``; nothing to do when the key is already gone."""
        if await self.find(zone, key_id) is None:
            return
        await self._cmd.run("keymgr", zone, "delete", f"id={key_id}", zone=zone)
        await self._tx.load_keys(zone)


def algorithm_number(algorithm: int | str) -> int:
    """A DNSSEC algorithm number from its number or mnemonic."""
    if isinstance(algorithm, int):
        return algorithm
    text = algorithm.strip()
    if text.isdigit():
        return int(text)
    return int(dns.dnssec.algorithm_from_text(text.upper()))
