"""Knot DNS 3.2 as a Model 1 signer (offline KSK), driven through ``keymgr`` and ``knotc``.

Knot holds only its own ZSKs; the zone owner holds the one KSK and returns the combined
DNSKEY RRset (owner KSK + every provider's ZSK), CDS and CDNSKEY, signed, as an SKR
(``providers.knot.skr``). Knot serves exactly that DNSKEY RRset with the owner's RRSIG and
signs everything else with its own active ZSK.

Facts this relies on (lab-notes.md, re-verified on Debian's Knot 3.2.6):

* ``keymgr ZONE list`` answers exit 0 and nothing for a zone Knot does not know; only
  ``knotc zone-status ZONE`` ("no such zone found") tells a missing zone apart.
* ``keymgr ZONE validate-skr FILE`` prints ``error: invalid SignedKeyResponse ...`` for a bad
  signature but then ``OK`` and exit 0; the adapter treats any ``error:`` line as failure.
* ``keymgr ZONE import-skr FILE`` is not atomic: blocks before a bad one are imported (and
  replace everything from their time on) before it fails. Hence validate first, always.
* Knot does not check that its own ZSK is in the SKR; :meth:`KnotProvider.import_skr`
  refuses an SKR lacking a ZSK that Knot will sign with during a block.
* A zone in offline mode does not load before the first SKR; ``knotc zone-reload`` loads it
  then, ``knotc zone-keys-load`` is what a loaded zone needs (it answers OK on an unloaded
  zone but loads nothing).
* Key timers are unix seconds, 0 = unset (= never); ``keymgr set`` refuses any change
  breaking ``publish <= active <= retire <= remove`` (0 counting as infinity). A timer
  change made with keymgr is seen by knotd only after ``zone-keys-load``.
* knotc prints its errors on stdout; keymgr takes ``-1d`` for an option unless ``--``
  ends the options; ``generate-ksr`` fails outright ("missing active KSK or ZSK") when a
  key of a second algorithm has no active ZSK of its own.
* Apex NS/CSYNC are zone data, changed in a knotc zone transaction (``zone-begin``,
  ``zone-unset``/``zone-set``, ``zone-commit``): the commit re-signs the changed RRsets
  with Knot's ZSK (the owner's RRSIGs over DNSKEY/CDS/CDNSKEY stay), bumps the serial and
  flushes the zone file, so the change survives ``zone-keys-load``, SKR imports,
  ``zone-reload`` and restarts. A commit with an empty diff changes nothing (no serial
  bump). Knot keeps one transaction per zone, server-side, across knotc calls: a second
  ``zone-begin`` fails ("too many transactions") until it is committed or aborted. A
  failed ``zone-set``/``zone-unset`` (``such record already exists``, ``not exists``,
  ``parser failed``) leaves the transaction open with what came before it.
* On a zone that is not loaded (offline mode, no SKR yet) ``zone-begin`` succeeds but the
  transaction starts from an *empty* zone; its commit fails ("semantic check", missing
  SOA). ``zone-read ZONE @`` answers "no such node in zone found" then.
* Knot's mandatory checks do not require an apex NS RRset: a commit removing it is
  accepted, and the zone is served without one. The adapter refuses that.

Every command goes through :meth:`KnotProvider._run`, the one place where an external
failure becomes a ``ProviderError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import os
import shlex
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import dns.dnssec
import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass

from core.config import KnotProviderConfig
from core.errors import ProviderError, ProviderUnreachable, Refused, ZoneMissing
from core.keys import Key, Role
from core.observation import ApiKey, ApiZoneState
from providers.base import Capability, Provider
from providers.knot.skr import (
    KsrBlock,
    SkrBlock,
    SkrFormatError,
    iso,
    parse_ksr,
    parse_offline,
    parse_skr,
)

LOGGER = logging.getLogger("multisigner.knot")

Tool = Literal["keymgr", "knotc"]
TimeSpec = int | str  # unix seconds, or keymgr's relative form "+0", "+14d", "-1h"

# Key sizes keymgr wants with an explicit algorithm (ECDSA/EdDSA sizes are fixed).
_KEY_SIZE = {5: 2048, 7: 2048, 8: 2048, 10: 2048, 13: 256, 14: 384, 15: 256, 16: 456}
_TAIL_LINES = 6
_TAIL_CHARS = 600
_MAX_TTL = 2**31 - 1  # RFC 2181 sec. 8


@dataclass(frozen=True)
class KnotKey:
    """One key of a zone in Knot's KASP database, timers as ``keymgr -j list`` reports
    them (unix seconds, 0 = unset)."""

    id: str
    tag: int
    algorithm: int
    ksk: bool
    zsk: bool
    timers: Mapping[str, int]

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> KnotKey:
        timers = {
            name: int(item.get(name) or 0)
            for name in (
                "publish",
                "ready",
                "active",
                "retire-active",
                "retire",
                "post-active",
                "revoke",
                "remove",
            )
        }
        return cls(
            id=str(item["id"]),
            tag=int(item["tag"]),
            algorithm=int(item["algorithm"]),
            ksk=bool(item["ksk"]),
            zsk=bool(item["zsk"]),
            timers=timers,
        )

    def reached(self, timer: str, at: float) -> bool:
        value = self.timers.get(timer, 0)
        return value != 0 and value <= at

    def published_at(self, at: float) -> bool:
        return self.reached("publish", at) and not self.reached("remove", at)

    def active_at(self, at: float) -> bool:
        return (
            self.reached("active", at)
            and not self.reached("retire", at)
            and not self.reached("remove", at)
        )

    @property
    def role(self) -> Role:
        if self.ksk and self.zsk:
            return "csk"
        return "ksk" if self.ksk else "zsk"

    @property
    def label(self) -> str:
        return f"{self.tag}/{dns.dnssec.algorithm_to_text(self.algorithm)} (id {self.id})"


# Apex RRsets Knot's signing owns (or a zone cannot lose): not set through set_apex_rrset.
_NOT_SETTABLE = frozenset(
    {"SOA", "DNSKEY", "CDS", "CDNSKEY", "RRSIG", "NSEC", "NSEC3", "NSEC3PARAM", "ZONEMD"}
)


@dataclass(frozen=True)
class ApexRecord:
    """One record of the zone apex as ``knotc zone-read ZONE @`` prints it."""

    rrtype: str
    ttl: int
    data: str


@dataclass(frozen=True)
class _ZoneStatus:
    loaded: bool  # knotd serves the zone (it has a serial)
    transaction: bool  # a knotc zone transaction is open


_SEP, _REVOKE = 0x0001, 0x0080  # DNSKEY flags (RFC 4034 sec. 2.1.1, RFC 5011 sec. 7)

# What this adapter changes in a zone transaction (see KnotProvider._reclaim_transaction).
_TRANSACTION_TYPES = frozenset({"NS", "CSYNC"})


class _ControlSocketBusy(ProviderUnreachable):
    """knotc could not connect to knotd: nothing ran, so the command may be retried."""


class KnotProvider(Provider):
    capabilities = (
        Capability.SIGN_EXTERNAL_DNSKEY_SET | Capability.GENERATE_KEYS | Capability.MANAGE_NS
    )
    type_name: ClassVar[str] = "knot"

    def __init__(self, config: KnotProviderConfig) -> None:
        super().__init__(config.name)
        self.config = config
        self._conf = str(config.knot_config)
        self._prefix = list(config.command_prefix)
        self._timeout = config.timeout.total_seconds()
        self._children: set[asyncio.subprocess.Process] = set()
        # Knot allows one open zone transaction per zone: ours, one at a time.
        self._zone_locks: dict[str, asyncio.Lock] = {}
        self._public: dict[str, dict[str, Key]] = {}  # zone -> key id -> DNSKEY

    # -- the one command seam ---------------------------------------------------------

    async def _run(
        self,
        tool: Tool,
        *args: str,
        zone: str | None = None,
        stdin: bytes | None = None,
        error_lines_fail: bool = False,
        options: Sequence[str] = (),
    ) -> str:
        """``_run_once``, retried when knotc could not even connect to knotd's control
        socket: under load it refuses connections ("OS lacked necessary resources") and
        nothing was executed, so trying again is safe."""
        for delay in (0.1, 0.3, 0.9, None):
            try:
                return await self._run_once(tool, *args, zone=zone, stdin=stdin,
                                            error_lines_fail=error_lines_fail, options=options)
            except _ControlSocketBusy:
                if delay is None:
                    raise
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _run_once(
        self,
        tool: Tool,
        *args: str,
        zone: str | None = None,
        stdin: bytes | None = None,
        error_lines_fail: bool = False,
        options: Sequence[str] = (),
    ) -> str:
        """Run ``command_prefix + [tool, -c, CONF, *options, --, *args]``; its stdout
        (``--``: a relative time like ``-1d`` is an argument, not an option). A timeout is
        ``ProviderUnreachable`` (the process group is killed), a non-zero exit (or, with
        ``error_lines_fail``, an ``error:`` line on stderr) ``ProviderError`` with the
        command and the tail of its output."""
        extra = ["-t", str(max(1, math.ceil(self._timeout)))] if tool == "knotc" else []
        argv = [*self._prefix, tool, "-c", self._conf, *extra, *options, "--", *args]
        command = shlex.join([tool, *options, *args])  # for messages (prefix left out)
        started = time.monotonic()
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own group: a timeout kills what it started too
            )
        except OSError as exc:
            raise ProviderError(
                f"cannot run {argv[0]!r} ({exc.strerror or exc}); check command_prefix and "
                "that Knot's tools (keymgr, knotc) are installed and on PATH",
                provider=self.name,
                zone=zone,
                endpoint=command,
            ) from None
        self._children.add(process)
        try:
            out, err = await asyncio.wait_for(process.communicate(stdin), self._timeout)
        except TimeoutError:
            await _kill(process)
            raise ProviderUnreachable(
                f"no answer within {self._timeout:g} s (killed); check that the host and "
                f"Knot's KASP database at {self._conf} are reachable and not locked",
                provider=self.name,
                zone=zone,
                endpoint=command,
            ) from None
        except BaseException:
            await _kill(process)  # cancelled: leave no child behind
            raise
        finally:
            self._children.discard(process)
        elapsed = time.monotonic() - started
        stdout = out.decode(errors="replace")
        stderr = err.decode(errors="replace")
        LOGGER.debug(
            "%s: %s -> exit %s in %.0f ms",
            self.name,
            command,
            process.returncode,
            elapsed * 1000,
            extra={"provider": self.name, "zone": zone},
        )
        output = stderr + "\n" + stdout  # knotc prints its errors on stdout
        errors = [ln for ln in output.splitlines() if ln.startswith("error:")]
        if process.returncode == 0 and not (error_lines_fail and errors):
            return stdout
        tail = _tail(stderr) or _tail(stdout) or "(no output)"
        if tool == "knotc" and "no such zone" in output:
            raise ZoneMissing(
                f"Knot does not serve the zone ({tail}); add it to {self._conf} and "
                "`knotc reload`, or remove the provider from the zone's signers",
                provider=self.name,
                zone=zone,
                endpoint=command,
            )
        if tool == "knotc" and "failed to connect" in output:
            raise _ControlSocketBusy(
                f"knotd's control socket refused the connection ({tail}); is knotd running "
                "(or overloaded)?",
                provider=self.name,
                zone=zone,
                endpoint=command,
            )
        raise ProviderError(
            f"failed (exit {process.returncode}): {tail}",
            provider=self.name,
            zone=zone,
            endpoint=command,
        )

    # -- reading --------------------------------------------------------------------

    async def check_access(self) -> None:
        status, _ = await asyncio.gather(
            self._run("knotc", "status"), self._run("keymgr", options=["-l"])
        )
        if "Running" not in status:
            raise ProviderError(
                f"knotc status answered {status.strip()!r}, not 'Running'",
                provider=self.name,
                endpoint="knotc status",
            )

    async def zone_loaded(self, zone: str) -> bool:
        """Whether knotd serves the zone now (``zone-status`` shows a serial, not "-").
        ZoneMissing when Knot does not know the zone at all."""
        return (await self._zone_status(zone)).loaded

    async def _zone_status(self, zone: str) -> _ZoneStatus:
        text = await self._run("knotc", "zone-status", zone, zone=zone)
        fields: dict[str, str] = {}
        for part in text.split("|"):
            name, _, value = part.strip().partition(":")
            fields[name.strip().rpartition("]")[2].strip()] = value.strip()
        if "serial" not in fields:
            raise ProviderError(
                f"cannot tell from knotc zone-status whether the zone is loaded: "
                f"{text.strip()!r}",
                provider=self.name,
                zone=zone,
                endpoint=f"knotc zone-status {zone}",
            )
        return _ZoneStatus(
            loaded=fields["serial"] not in ("", "-", "none"),
            transaction=fields.get("transaction") == "open",
        )

    async def _reclaim_transaction(self, zone: str) -> None:
        """Abort a zone transaction a killed run of ours left open, or refuse.

        Knot's transactions are server-side and outlive the knotc that began them: a
        controller killed between ``zone-begin`` and ``zone-commit`` leaves one open, and
        ``knotc -b zone-keys-load`` on a zone with an open transaction wedges knotd's
        control socket for good (3.2.6, verified). Its diff tells ours apart: this adapter
        only ever changes the apex NS and CSYNC RRsets in a transaction, and only under
        the controller's zone lease, so an open transaction whose diff is empty or touches
        nothing else is the leftover of a killed run and is aborted. Anything else is
        someone else's work: refused, untouched."""
        diff = await self._run("knotc", "zone-diff", zone, zone=zone)
        foreign = [ln.strip() for ln in diff.splitlines()
                   if ln.strip() and not _own_diff_line(ln, zone)]
        if foreign:
            raise ProviderError(
                "another zone transaction is open at Knot, changing more than the apex "
                f"NS/CSYNC this controller manages ({'; '.join(foreign[:3])}"
                f"{' ...' if len(foreign) > 3 else ''}): finish it (`knotc zone-commit "
                f"{zone}` or `knotc zone-abort {zone}`) and retry; nothing changed",
                provider=self.name,
                zone=zone,
                endpoint=f"knotc zone-diff {zone}",
            )
        await self._run("knotc", "zone-abort", zone, zone=zone)
        LOGGER.warning(
            "%s: aborted an open zone transaction on %s left by a killed run (diff: %s)",
            self.name,
            zone,
            "; ".join(ln.strip() for ln in diff.splitlines() if ln.strip()) or "empty",
            extra={"provider": self.name, "zone": zone},
        )

    async def list_keys(self, zone: str) -> list[KnotKey]:
        """Knot's keys of ``zone`` with their timers (``keymgr -j ZONE list``)."""
        text = await self._run("keymgr", zone, "list", zone=zone, options=["-j"])
        try:
            return [KnotKey.from_json(item) for item in json.loads(text or "[]")]
        except (ValueError, KeyError, TypeError) as exc:
            raise ProviderError(
                f"unexpected keymgr -j list output ({exc.__class__.__name__}: {exc})",
                provider=self.name,
                zone=zone,
                endpoint=f"keymgr -j {zone} list",
            ) from None

    async def _public_keys(self, zone: str, keys: Sequence[KnotKey]) -> list[Key]:
        """The DNSKEY of each key, ``keymgr dnskey`` only for those not seen before.

        Knot's key id is the SHA-1 of the public key (SubjectPublicKeyInfo DER), so an id
        names one public key for good; only the flags could change (KSK bit, revoke), and
        a cached DNSKEY is used only while they match what ``list`` says. Saves one
        keymgr run per key per read, which is most of an idle Knot read's cost."""
        now = time.time()
        cache = self._public.setdefault(zone, {})
        for stale in set(cache) - {k.id for k in keys}:  # deleted keys: forget them
            del cache[stale]

        async def one(k: KnotKey) -> Key:
            known = cache.get(k.id)
            if known is not None and _flags_match(known, k, now):
                return known
            cache[k.id] = public = await self._dnskey(zone, k.id)
            return public

        return list(await asyncio.gather(*(one(k) for k in keys)))

    async def _dnskey(self, zone: str, key_id: str) -> Key:
        text = await self._run("keymgr", zone, "dnskey", f"id={key_id}", zone=zone)
        # "example.test. DNSKEY 256 3 13 base64"
        parts = text.split()
        try:
            at = [p.upper() for p in parts].index("DNSKEY")
            return Key.parse(" ".join(parts[at + 1 :]))
        except (ValueError, IndexError, dns.exception.DNSException) as exc:
            raise ProviderError(
                f"unexpected keymgr dnskey output {text.strip()[:120]!r} ({exc})",
                provider=self.name,
                zone=zone,
                endpoint=f"keymgr {zone} dnskey id={key_id}",
            ) from None

    async def _api_keys(self, zone: str, keys: Sequence[KnotKey]) -> list[ApiKey]:
        now = time.time()
        publics = await self._public_keys(zone, keys)
        return [
            ApiKey(
                key=public,
                role=k.role,
                active=k.active_at(now),
                published=k.published_at(now),
                key_id=k.id,
            )
            for k, public in zip(keys, publics, strict=True)
        ]

    async def read_keys(self, zone: str) -> ApiZoneState:
        """Knot's own keys (ZSKs) only; ZoneMissing for a zone Knot does not know."""
        # zone-status: ZoneMissing for a zone Knot does not know (keymgr lists nothing then)
        _, keys = await asyncio.gather(self.zone_loaded(zone), self.list_keys(zone))
        return ApiZoneState(
            provider=self.name,
            own_keys=tuple(await self._api_keys(zone, keys)),
            foreign_dnskeys=frozenset(),
            cds=frozenset(),
            cdnskey=frozenset(),
        )

    async def read_zone(self, zone: str) -> ApiZoneState:
        """Knot's own keys (ZSKs) and the apex NS and CSYNC RRsets (``zone-read ZONE @``;
        both empty while the zone is not loaded). Offline mode has no foreign records of its
        own: the served DNSKEY/CDS/CDNSKEY come from the SKR (see :meth:`offline_records`)."""
        state, apex = await asyncio.gather(self.read_keys(zone), self.apex_records(zone))
        ns = frozenset(_absolute(r.data) for r in apex if r.rrtype == "NS")
        csync = frozenset(r.data for r in apex if r.rrtype == "CSYNC")
        return dataclasses.replace(state, ns=ns, csync=csync)

    async def apex_records(self, zone: str, rrtype: str | None = None) -> list[ApexRecord]:
        """The apex records (of ``rrtype``; RRSIGs left out) knotd serves now
        (``knotc zone-read ZONE @ [TYPE]``); empty when the zone is not loaded."""
        args = [zone, "@"] + ([rrtype.upper()] if rrtype else [])
        try:
            text = await self._run("knotc", "zone-read", *args, zone=zone)
        except ZoneMissing:
            raise
        except ProviderError as exc:
            if "no such node" in str(exc):  # no apex: not loaded (no SKR yet)
                return []
            raise
        return [r for r in _parse_zone_read(text, zone) if r.rrtype != "RRSIG"]

    async def requested_dnskey_ttl(self, zone: str) -> int | None:
        blocks = await self.key_signing_request(zone, "+0", "+0")
        return next((b.ttl for b in blocks if b.ttl is not None), None)

    async def key_signing_request(
        self,
        zone: str,
        start: TimeSpec = "+0",
        end: TimeSpec = "+14d",
        *,
        algorithm: int | str | None = None,
    ) -> list[KsrBlock]:
        """``keymgr ZONE generate-ksr START END``, parsed. With ``algorithm`` (the zone's
        policy algorithm), a ZSK of any other algorithm is a ProviderError; a KSK in the
        KSR always is (in Model 1 the owner holds the only KSK)."""
        command = f"keymgr {zone} generate-ksr {start} {end}"
        text = await self._run("keymgr", zone, "generate-ksr", str(start), str(end), zone=zone)
        try:
            blocks = parse_ksr(text, zone=zone)
        except SkrFormatError as exc:
            raise ProviderError(
                f"unusable KSR: {exc}", provider=self.name, zone=zone, endpoint=command
            ) from None
        want = None if algorithm is None else _algorithm_number(algorithm)
        for block in blocks:
            for key in block.keys:
                if key.sep:
                    raise ProviderError(
                        f"the KSR for {iso(block.timestamp)} holds a KSK "
                        f"(key tag {key.key_tag}, {key.algorithm_name}); in Model 1 the zone "
                        "owner holds the only KSK: delete it from Knot's KASP database",
                        provider=self.name,
                        zone=zone,
                        endpoint=command,
                    )
                if want is not None and key.algorithm != want:
                    raise ProviderError(
                        f"the KSR for {iso(block.timestamp)} holds ZSK key tag {key.key_tag} "
                        f"with algorithm {key.algorithm_name} ({key.algorithm}), but the zone "
                        f"is signed with {dns.dnssec.algorithm_to_text(want)} ({want}); "
                        "every signer must use one algorithm (RFC 8901 sec. 4): fix the "
                        f"policy algorithm in {self._conf} and replace that key",
                        provider=self.name,
                        zone=zone,
                        endpoint=command,
                    )
        return blocks

    async def offline_records(self, zone: str, start: TimeSpec = "+0") -> list[SkrBlock]:
        """The imported SKR records in effect from ``start`` on (``keymgr show-offline
        START``): the block in effect at ``start`` first, stamped ``start`` when it began
        earlier. Empty: nothing imported. (With a second, "to" argument keymgr 3.2.6 prints
        nothing for some windows, so none is passed.)"""
        args = [zone, "show-offline", str(start)]
        text = await self._run("keymgr", *args, zone=zone)
        try:
            return parse_offline(text, zone=zone)
        except SkrFormatError as exc:
            raise ProviderError(
                f"unexpected show-offline output: {exc}",
                provider=self.name,
                zone=zone,
                endpoint=shlex.join(["keymgr", *args]),
            ) from None

    # -- apex RRsets (NS, CSYNC) ----------------------------------------------------

    async def set_apex_rrset(
        self, zone: str, rrtype: str, contents: Sequence[str], ttl: int
    ) -> None:
        """Make ``contents`` the complete apex RRset of ``rrtype`` (TTL ``ttl``); empty
        removes it. One knotc zone transaction: ``zone-begin``, ``zone-unset ZONE @ TYPE``,
        ``zone-set ZONE @ TTL TYPE DATA`` per record, ``zone-commit`` (knotd re-signs the
        RRset with its ZSK then); on any failure ``zone-abort`` and a ProviderError naming
        the command. Idempotent: nothing is run when Knot already serves exactly that.

        Refused: the RRsets Knot's signing owns (DNSKEY, CDS, CDNSKEY -- in Model 1 they
        come from the SKR --, RRSIG, NSEC*, SOA), an empty NS RRset (Knot would serve a zone
        without one), and a zone that is not loaded (a transaction would start empty)."""
        rtype = rrtype.strip().upper()
        endpoint = f"knotc zone-set {zone} @ {ttl} {rtype}"
        if rtype in _NOT_SETTABLE:
            raise ProviderError(
                f"refusing to set the apex {rtype} RRset: Knot's DNSSEC signing owns it "
                "(in Model 1 the owner's SKR brings DNSKEY, CDS and CDNSKEY)",
                provider=self.name,
                zone=zone,
                endpoint=endpoint,
            )
        if rtype == "NS" and not contents:
            raise ProviderError(
                "refusing to remove the apex NS RRset: Knot would accept it and serve the "
                "zone without one",
                provider=self.name,
                zone=zone,
                endpoint=endpoint,
            )
        if not 0 <= ttl <= _MAX_TTL:
            raise ProviderError(
                f"invalid TTL {ttl} (0..{_MAX_TTL}); nothing changed",
                provider=self.name,
                zone=zone,
                endpoint=endpoint,
            )
        want = self._canonical(zone, rtype, contents, endpoint)
        async with self._zone_locks.setdefault(zone, asyncio.Lock()):
            current = await self.apex_records(zone, rtype)
            if not current and not await self.zone_loaded(zone):
                raise ProviderError(
                    "the zone is not loaded (an offline-KSK zone loads with its first SKR): "
                    "a zone transaction would start from an empty zone; import an SKR first",
                    provider=self.name,
                    zone=zone,
                    endpoint=endpoint,
                )
            have = self._canonical(zone, rtype, [r.data for r in current], endpoint)
            # rdata equality is DNSSEC's canonical one: names compare case-insensitively
            if have.keys() == want.keys() and (not want or {r.ttl for r in current} == {ttl}):
                return
            await self._transaction(zone, rtype, sorted(want.values()), ttl, remove=bool(current))

    def _canonical(
        self, zone: str, rtype: str, contents: Sequence[str], endpoint: str
    ) -> dict[dns.rdata.Rdata, str]:
        """``contents`` parsed (names absolute: relative ones are taken from the root, as
        the PowerDNS adapter does), deduplicated: each record's presentation form (absolute
        names: knotc would take a relative one from the zone's origin) by its rdata;
        ProviderError for one that does not parse."""
        out: dict[dns.rdata.Rdata, str] = {}
        for text in contents:
            try:
                rd = dns.rdata.from_text(
                    dns.rdataclass.IN, rtype, text, origin=dns.name.root, relativize=False
                )
            except (dns.exception.DNSException, ValueError) as exc:
                raise ProviderError(
                    f"{rtype} record {text!r} does not parse: {exc}; nothing changed",
                    provider=self.name,
                    zone=zone,
                    endpoint=endpoint,
                ) from None
            out.setdefault(rd, rd.to_text())
        return out

    async def _transaction(
        self, zone: str, rtype: str, records: Sequence[str], ttl: int, *, remove: bool
    ) -> None:
        # zone-begin failing means another transaction is open: a killed run's (aborted)
        # or someone else's (refused), see _reclaim_transaction.
        for attempt in (1, 2):
            try:
                await self._run("knotc", "zone-begin", zone, zone=zone)
                break
            except ProviderUnreachable:
                raise
            except ProviderError as exc:
                if "too many transactions" not in str(exc) or attempt == 2:
                    raise
                await self._reclaim_transaction(zone)
        try:
            if remove:
                try:
                    await self._run("knotc", "zone-unset", zone, "@", rtype, zone=zone)
                except ProviderUnreachable:
                    raise
                except ProviderError as exc:
                    if "not exists" not in str(exc):  # gone since we read it: fine
                        raise
            for data in records:
                await self._run("knotc", "zone-set", zone, "@", str(ttl), rtype, data, zone=zone)
            await self._run("knotc", "zone-commit", zone, zone=zone)
        except BaseException:
            # shielded: a cancelled caller must not leave the transaction open either
            with contextlib.suppress(Exception):
                await asyncio.shield(self._run("knotc", "zone-abort", zone, zone=zone))
            raise
        LOGGER.info(
            "%s: apex %s of %s = %s",
            self.name,
            rtype,
            zone,
            ", ".join(records) or "(none)",
            extra={"provider": self.name, "zone": zone},
        )

    # -- the SKR --------------------------------------------------------------------

    async def import_skr(self, zone: str, skr_text: str) -> None:
        """Validate and import an SKR, then make knotd use it (``zone-keys-load``, or
        ``zone-reload`` for a zone that could not load before its first SKR).

        Refused (nothing imported) when a block's DNSKEY RRset lacks a ZSK Knot signs with
        during that block: Knot would import it and serve a bogus zone."""
        try:
            blocks = parse_skr(skr_text, zone=zone)
        except SkrFormatError as exc:
            raise ProviderError(
                f"the SKR is malformed, nothing imported: {exc}",
                provider=self.name,
                zone=zone,
                endpoint=f"keymgr {zone} import-skr",
            ) from None
        await self._check_own_zsks(zone, blocks)
        async with self._skr_source(skr_text) as (path, stdin):
            await self._run(
                "keymgr",
                zone,
                "validate-skr",
                path,
                zone=zone,
                stdin=stdin,
                error_lines_fail=True,
            )
            await self._run(
                "keymgr",
                zone,
                "import-skr",
                path,
                zone=zone,
                stdin=stdin,
                error_lines_fail=True,
            )
        await self._load_keys(zone, reload=True)

    async def _check_own_zsks(self, zone: str, blocks: Sequence[SkrBlock]) -> None:
        keys = await self.list_keys(zone)
        if not keys:
            return
        publics = dict(zip((k.id for k in keys), await self._public_keys(zone, keys),
                           strict=True))
        problems: list[str] = []
        now = int(time.time())
        for index, block in enumerate(blocks):
            # A block lasts until the next one (the last one until its RRSIGs expire) and
            # is served from now on at the earliest: every key signing at any time in that
            # window must be in its DNSKEY RRset.
            until = blocks[index + 1].timestamp if index + 1 < len(blocks) else None
            if until is not None and until <= now:
                continue
            start = max(block.timestamp, now)
            served = block.keys
            for k in keys:
                if _signs_during(k, start, until) and publics[k.id] not in served:
                    problems.append(
                        f"block {block.timestamp} ({iso(block.timestamp)}) lacks Knot's ZSK "
                        f"{k.label}, which signs then"
                    )
        if problems:
            raise Refused(
                f"provider {self.name!r}, zone {zone}: SKR not imported: Knot would serve "
                "zone data signed by a ZSK missing from the owner-signed DNSKEY RRset",
                problems,
            )

    @contextlib.asynccontextmanager
    async def _skr_source(self, text: str) -> AsyncIterator[tuple[str, bytes | None]]:
        """(path argument, stdin bytes) for keymgr to read the SKR from."""
        if self.config.skr_transfer == "stdin":
            yield "/dev/stdin", text.encode()
            return
        directory = self.config.skr_directory or Path(tempfile.gettempdir())
        fd, name = tempfile.mkstemp(prefix="multisigner-", suffix=".skr", dir=directory)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.chmod(name, 0o644)  # public data; keymgr may run as another user (knot)
            yield name, None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(name)

    async def _load_keys(self, zone: str, *, reload: bool = False) -> None:
        """Make knotd pick up KASP changes (blocking until re-signed): ``zone-keys-load``
        on a loaded zone; on a zone not loaded (an offline-KSK zone without SKR records
        cannot load) ``zone-reload`` when ``reload`` (after an SKR import), else nothing:
        the next import loads it with the keys as they are then."""
        async with self._zone_locks.setdefault(zone, asyncio.Lock()):
            status = await self._zone_status(zone)
            if status.transaction:  # -b would wedge knotd's control socket (see below)
                await self._reclaim_transaction(zone)
            if status.loaded:
                await self._run("knotc", "zone-keys-load", zone, zone=zone, options=["-b"])
            elif reload:
                await self._run("knotc", "zone-reload", zone, zone=zone, options=["-b"])

    # -- keys -----------------------------------------------------------------------

    async def _key(self, zone: str, key_id: str) -> KnotKey | None:
        for k in await self.list_keys(zone):
            if k.id == key_id:
                return k
        return None

    async def create_key(
        self, zone: str, role: Role, algorithm: str, *, active: bool, published: bool
    ) -> ApiKey:
        """A new ZSK (``keymgr ZONE generate ksk=no zsk=yes ...``). Timers: publish and
        active ``+0`` when asked for, else unset (0 = never; no surprise activation later).
        Only ZSKs: in Model 1 the zone owner holds the KSK."""
        if role != "zsk":
            raise ProviderError(
                f"cannot create a {role.upper()}: Knot in offline-KSK mode (Model 1) holds "
                "only ZSKs; the zone owner holds the KSK",
                provider=self.name,
                zone=zone,
            )
        if active and not published:
            raise ProviderError(
                "refusing an active but unpublished ZSK: its signatures could not validate",
                provider=self.name,
                zone=zone,
            )
        number = _algorithm_number(algorithm)
        args = [
            zone,
            "generate",
            "ksk=no",
            "zsk=yes",
            f"algorithm={number}",
            f"publish={'+0' if published else '0'}",
            f"active={'+0' if active else '0'}",
        ]
        if number in _KEY_SIZE:
            args.append(f"size={_KEY_SIZE[number]}")
        out = await self._run("keymgr", *args, zone=zone)
        key_id = next((w for w in out.split() if len(w) == 40), "")
        if not key_id:
            raise ProviderError(
                f"keymgr generate printed no key id: {out.strip()[:120]!r}",
                provider=self.name,
                zone=zone,
                endpoint=shlex.join(["keymgr", *args]),
            )
        public = await self._dnskey(zone, key_id)
        self._public.setdefault(zone, {})[key_id] = public
        if active:
            await self._load_keys(zone)
        return ApiKey(key=public, role="zsk", active=active, published=published, key_id=key_id)

    async def set_key_state(self, zone: str, key_id: str, *, active: bool, published: bool) -> None:
        """Set timers so the key is (not) published / (not) signing from now on, and clear
        future timers that would change that state later (the controller owns the
        schedule). Idempotent: nothing is run when the key is already in that state."""
        if active and not published:
            raise ProviderError(
                "refusing to make a ZSK sign while unpublished: its signatures could not validate",
                provider=self.name,
                zone=zone,
                endpoint=f"keymgr {zone} set id={key_id}",
            )
        key = await self._key(zone, key_id)
        if key is None:
            raise ProviderError(
                f"no key with id {key_id} in Knot's KASP database",
                provider=self.name,
                zone=zone,
                endpoint=f"keymgr {zone} list",
            )
        changes = _timer_changes(key, time.time(), active=active, published=published)
        if not changes:
            return
        await self._run(
            "keymgr",
            zone,
            "set",
            f"id={key_id}",
            *(f"{name}={value}" for name, value in changes.items()),
            zone=zone,
        )
        await self._load_keys(zone)

    async def delete_key(self, zone: str, key_id: str) -> None:
        """``keymgr ZONE delete id=ID`` (Knot 3.2 deletes at once, whatever the timers);
        nothing to do when the key is already gone."""
        if await self._key(zone, key_id) is None:
            return
        await self._run("keymgr", zone, "delete", f"id={key_id}", zone=zone)
        await self._load_keys(zone)

    async def aclose(self) -> None:
        for process in list(self._children):
            await _kill(process)


# ------------------------------------------------------------------------------ helpers


def _timer_changes(key: KnotKey, now: float, *, active: bool, published: bool) -> dict[str, str]:
    """keymgr ``set`` arguments taking ``key`` to the wanted state from now on (empty:
    already there; active-but-unpublished is refused by the callers).

    Knot insists on ``publish <= active <= retire <= remove`` with 0 = never (keymgr: "timestamp
    'active' must be before 'retire'"), so a key that never signed is unpublished by unsetting
    ``publish``, and one that did is retired, then removed. Timers already passed are kept as
    history; pending ones that would leave the wanted state later are unset."""
    timers = key.timers
    ever_active = key.reached("active", now)
    want: dict[str, int | str] = {}
    if published or ever_active:
        want["publish"] = timers["publish"] if key.reached("publish", now) else "+0"
    else:
        want["publish"] = 0
    if active:
        want["active"] = timers["active"] if ever_active else "+0"
        if want["publish"] == "+0":
            want["active"] = "+0"  # (a key signing while unpublished) both from now
        want["retire"] = want["remove"] = 0
    elif ever_active:
        want["active"] = timers["active"]
        want["retire"] = timers["retire"] if key.reached("retire", now) else "+0"
        if published:
            want["remove"] = 0
        else:
            want["remove"] = timers["remove"] if key.reached("remove", now) else "+0"
    else:
        want["active"] = want["retire"] = want["remove"] = 0
    return {t: str(v) for t, v in want.items() if v != timers.get(t, 0)}


def _signs_during(key: KnotKey, start: int, until: int | None) -> bool:
    """Whether the ZSK signs at any time in [start, until)."""
    if not key.zsk:
        return False
    act = key.timers.get("active", 0)
    if act == 0 or (until is not None and act >= until):
        return False
    end = min(
        (v for v in (key.timers.get("retire", 0), key.timers.get("remove", 0)) if v),
        default=None,
    )
    return end is None or end > start


def _parse_zone_read(text: str, zone: str) -> list[ApexRecord]:
    """``[zone.] owner TTL TYPE DATA`` lines of ``knotc zone-read`` (class not printed)."""
    out: list[ApexRecord] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            line = line.partition("]")[2].strip()
        parts = line.split(None, 3)
        if len(parts) < 4 or not parts[1].isdigit():
            continue
        _, ttl, rtype, data = parts
        rtype = rtype.upper()
        if rtype != "RRSIG":
            with contextlib.suppress(dns.exception.DNSException, ValueError):
                data = dns.rdata.from_text(
                    dns.rdataclass.IN,
                    rtype,
                    data,
                    origin=dns.name.from_text(zone),
                    relativize=False,
                ).to_text()
        out.append(ApexRecord(rtype, int(ttl), data))
    return out


def _flags_match(public: Key, key: KnotKey, now: float) -> bool:
    flags = public.flags
    return (bool(flags & _SEP) == key.ksk
            and bool(flags & _REVOKE) == key.reached("revoke", now))


def _own_diff_line(line: str, zone: str) -> bool:
    """Whether a ``knotc zone-diff`` line (``[zone.] +owner TTL TYPE DATA``) is a change
    this adapter makes in a transaction: the apex NS or CSYNC RRset."""
    text = line.strip()
    if text.startswith("["):
        text = text.partition("]")[2].strip()
    parts = text.split(None, 3)
    if len(parts) < 3 or parts[0][:1] not in "+-":
        return False
    owner = parts[0][1:]
    rtype = parts[2] if parts[1].isdigit() else parts[1]
    return _absolute(owner) == _absolute(zone) and rtype.upper() in _TRANSACTION_TYPES


def _absolute(name: str) -> str:
    name = name.lower()
    return name if name.endswith(".") else name + "."


def _algorithm_number(algorithm: int | str) -> int:
    if isinstance(algorithm, int):
        return algorithm
    text = algorithm.strip()
    if text.isdigit():
        return int(text)
    return int(dns.dnssec.algorithm_from_text(text.upper()))


def _tail(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    tail = " | ".join(lines[-_TAIL_LINES:])
    return tail[-_TAIL_CHARS:]


async def _kill(process: asyncio.subprocess.Process) -> None:
    """Kill the process group we started (its session) and reap it."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        await process.wait()


__all__ = ["ApexRecord", "KnotKey", "KnotProvider", "KnotProviderConfig"]
