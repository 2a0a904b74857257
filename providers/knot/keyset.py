"""Model 1 at Knot: the owner's signed key set in, as an SKR; Knot's key signing request
(KSR) and its imported records out.

Facts this relies on (Knot 3.2.6, verified):

* ``keymgr ZONE validate-skr FILE`` prints ``error: invalid SignedKeyResponse ...`` for a
  bad signature but then ``OK`` and exit 0: any ``error:`` line counts as failure.
* ``keymgr ZONE import-skr FILE`` is not atomic: blocks before a bad one are imported (and
  replace everything from their time on) before it fails. Hence validate first, always.
* Knot does not check that its own ZSKs are in the SKR's DNSKEY RRset (an SKR without
  them imports fine and the zone goes bogus): :meth:`KnotKeySets.import_blocks` refuses an
  SKR lacking a ZSK that Knot signs with during a block.
* ``generate-ksr`` fails outright ("missing active KSK or ZSK") when a key of a second
  algorithm has no active ZSK of its own.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import dns.dnssec
import dns.name
import dns.rrset

from core.config import KnotProviderConfig
from core.errors import Refused
from core.keyset import SignedKeyBlock, SignedKeySet, SignedRRset
from providers.knot.commands import KnotCommands
from providers.knot.keys import KnotKeys, algorithm_number
from providers.knot.skr import (
    KsrBlock,
    SkrBlock,
    SkrFormatError,
    format_skr,
    iso,
    parse_ksr,
    parse_offline,
    parse_skr,
)
from providers.knot.timers import signs_during
from providers.knot.transactions import ZoneTransactions

TimeSpec = int | str  # unix seconds, or keymgr's relative form "+0", "+14d", "-1h"


def to_skr_blocks(keyset: SignedKeySet) -> list[SkrBlock]:
    """The neutral set as SKR blocks (same RRsets, same order)."""
    return [
        SkrBlock(
            b.valid_from, b.dnskey.rrset, b.dnskey.rrsigs,
            b.cdnskey.rrset if b.cdnskey else None, b.cdnskey.rrsigs if b.cdnskey else None,
            b.cds.rrset if b.cds else None, b.cds.rrsigs if b.cds else None,
        )
        for b in keyset.blocks
    ]


def from_skr_blocks(zone: str | dns.name.Name, blocks: Sequence[SkrBlock]) -> SignedKeySet:
    """SKR blocks (parsed, e.g. Knot's own ``sign-ksr`` output) as a neutral set."""

    def signed(rrset: dns.rrset.RRset | None, sigs: dns.rrset.RRset | None) -> SignedRRset | None:
        return None if rrset is None or sigs is None else SignedRRset(rrset, sigs)

    return SignedKeySet(str(zone), tuple(
        SignedKeyBlock(b.timestamp, SignedRRset(b.dnskey, b.dnskey_sigs),
                       cds=signed(b.cds, b.cds_sigs), cdnskey=signed(b.cdnskey, b.cdnskey_sigs))
        for b in blocks
    ))


def skr_text(keyset: SignedKeySet) -> str:
    """The SKR ``keymgr ZONE import-skr`` takes for this set."""
    return format_skr(keyset.zone, to_skr_blocks(keyset))


class KnotKeySets:
    """SKR import and the KSR of one Knot provider."""

    def __init__(self, config: KnotProviderConfig, commands: KnotCommands,
                 transactions: ZoneTransactions, keys: KnotKeys) -> None:
        self._config = config
        self._cmd = commands
        self._tx = transactions
        self._keys = keys

    async def serve(self, zone: str, keyset: SignedKeySet) -> None:
        """Serve the owner-signed set: as an SKR, through :meth:`import_blocks`."""
        if dns.name.from_text(keyset.zone) != dns.name.from_text(zone):
            raise self._cmd.error(f"the signed key set is for {keyset.zone}, not {zone}; "
                                  "nothing imported", zone=zone)
        blocks = to_skr_blocks(keyset)
        try:
            text = format_skr(zone, blocks)
        except SkrFormatError as exc:
            raise self._cmd.error(f"the signed key set does not make an SKR, nothing "
                                  f"imported: {exc}", zone=zone) from None
        await self.import_blocks(zone, blocks, text)

    async def import_skr(self, zone: str, skr_text: str) -> None:
        """Import an SKR given as text (e.g. from ``keymgr sign-ksr``), checked and
        imported exactly as :meth:`serve` does."""
        try:
            blocks = parse_skr(skr_text, zone=zone)
        except SkrFormatError as exc:
            raise self._cmd.error(f"the SKR is malformed, nothing imported: {exc}",
                                  zone=zone, endpoint=f"keymgr {zone} import-skr") from None
        await self.import_blocks(zone, blocks, skr_text)

    async def import_blocks(self, zone: str, blocks: Sequence[SkrBlock], text: str) -> None:
        """Validate and import the SKR ``text`` (parsed: ``blocks``), then make knotd use
        it (``zone-keys-load``, or ``zone-reload`` for a zone that could not load before
        its first SKR). Refused (nothing imported) when a block's DNSKEY RRset lacks a ZSK
        Knot signs with during that block: Knot would import it and serve a bogus zone."""
        await self._check_own_zsks(zone, blocks)
        async with self._source(text) as (path, stdin):
            for command in ("validate-skr", "import-skr"):
                await self._cmd.run("keymgr", zone, command, path, zone=zone, stdin=stdin,
                                    error_lines_fail=True)
        await self._tx.load_keys(zone, reload=True)

    async def _check_own_zsks(self, zone: str, blocks: Sequence[SkrBlock]) -> None:
        keys = await self._keys.list_keys(zone)
        if not keys:
            return
        publics = dict(zip((k.id for k in keys), await self._keys.public_keys(zone, keys),
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
                if signs_during(k, start, until) and publics[k.id] not in served:
                    problems.append(
                        f"block {block.timestamp} ({iso(block.timestamp)}) lacks Knot's ZSK "
                        f"{k.label}, which signs then"
                    )
        if problems:
            raise Refused(
                f"provider {self._cmd.name!r}, zone {zone}: SKR not imported: Knot would serve "
                "zone data signed by a ZSK missing from the owner-signed DNSKEY RRset",
                problems,
            )

    @contextlib.asynccontextmanager
    async def _source(self, text: str) -> AsyncIterator[tuple[str, bytes | None]]:
        """(path argument, stdin bytes) for keymgr to read the SKR from."""
        if self._config.skr_transfer == "stdin":
            yield "/dev/stdin", text.encode()
            return
        directory = self._config.skr_directory or Path(tempfile.gettempdir())
        fd, name = tempfile.mkstemp(prefix="multisigner-", suffix=".skr", dir=directory)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.chmod(name, 0o644)  # public data; keymgr may run as another user (knot)
            yield name, None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(name)

    async def key_signing_request(
        self, zone: str, start: TimeSpec = "+0", end: TimeSpec = "+14d", *,
        algorithm: int | str | None = None,
    ) -> list[KsrBlock]:
        """``keymgr ZONE generate-ksr START END``, parsed. With ``algorithm`` (the zone's
        policy algorithm), a ZSK of any other algorithm is a ProviderError; a KSK in the
        KSR always is (in Model 1 the owner holds the only KSK)."""
        command = f"keymgr {zone} generate-ksr {start} {end}"
        text = await self._cmd.run("keymgr", zone, "generate-ksr", str(start), str(end),
                                   zone=zone)
        try:
            blocks = parse_ksr(text, zone=zone)
        except SkrFormatError as exc:
            raise self._cmd.error(f"unusable KSR: {exc}", zone=zone, endpoint=command) from None
        want = None if algorithm is None else algorithm_number(algorithm)
        for block in blocks:
            for key in block.keys:
                if key.sep:
                    raise self._cmd.error(
                        f"the KSR for {iso(block.timestamp)} holds a KSK "
                        f"(key tag {key.key_tag}, {key.algorithm_name}); in Model 1 the zone "
                        "owner holds the only KSK: delete it from Knot's KASP database",
                        zone=zone, endpoint=command,
                    )
                if want is not None and key.algorithm != want:
                    raise self._cmd.error(
                        f"the KSR for {iso(block.timestamp)} holds ZSK key tag {key.key_tag} "
                        f"with algorithm {key.algorithm_name} ({key.algorithm}), but the zone "
                        f"is signed with {dns.dnssec.algorithm_to_text(want)} ({want}); "
                        "every signer must use one algorithm (RFC 8901 sec. 4): fix the "
                        f"policy algorithm in {self._cmd.conf} and replace that key",
                        zone=zone, endpoint=command,
                    )
        return blocks

    async def offline_records(self, zone: str, start: TimeSpec = "+0") -> list[SkrBlock]:
        """The imported SKR records in effect from ``start`` on (``keymgr show-offline
        START``): the block in effect at ``start`` first, stamped ``start`` when it began
        earlier. Empty: nothing imported. (With a second, "to" argument keymgr 3.2.6 prints
        nothing for some windows, so none is passed.)"""
        args = [zone, "show-offline", str(start)]
        text = await self._cmd.run("keymgr", *args, zone=zone)
        try:
            return parse_offline(text, zone=zone)
        except SkrFormatError as exc:
            raise self._cmd.error(f"unexpected show-offline output: {exc}", zone=zone,
                                  endpoint=shlex.join(["keymgr", *args])) from None
