"""Knot DNS offline-KSK exchange files: the KeySigningRequest (KSR) Knot writes and the
SignedKeyResponse (SKR) the zone owner returns. Pure text <-> data; no I/O, no clock.

Formats (Knot 3.2.6, verified):

KSR (``keymgr ZONE generate-ksr FROM TO``)::

    ;; KeySigningRequest 1.0 1795612526 (2026-11-25T13:15:26Z) =========
    example.test.  300 DNSKEY 256 3 13 ( ...multi-line base64... ) ; ZSK, ...
    ;; KeySigningRequest 1.0 1796822126 (2026-12-09T13:15:26Z) =========
    ...
    ;; KeySigningRequest 1.0 generated at 2026-11-25T13:15:26Z by Knot DNS 3.2.6

SKR (``keymgr ZONE import-skr FILE``): per period a block
``;; SignedKeyResponse 1.0 <unix-ts> ...`` holding the DNSKEY RRset, optionally the
CDNSKEY and CDS RRsets, and the RRSIGs over each; the file must end with a line starting
``;; SignedKeyResponse 1.0 generated`` (Knot ignores/rejects a file without it).
Knot accepts one-line records as dnspython prints them, which is what :func:`format_skr`
writes; :func:`parse_skr` also reads Knot's own multi-line ``sign-ksr`` output.

Knot does *not* check that its own ZSKs are in the SKR's DNSKEY RRset (an SKR without
them imports fine and the zone goes bogus): ``providers.knot.keyset`` checks that before
every import.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zonefile
from dns.rdtypes.ANY.DNSKEY import DNSKEY

from core.keys import Key
from core.keyset import iso  # the form Knot prints next to the unix time

__all__ = ["KsrBlock", "SkrBlock", "SkrFormatError", "check_skr_signature_windows",
           "format_skr", "iso", "parse_ksr", "parse_offline", "parse_skr"]

KSR_MAGIC = ";; KeySigningRequest 1.0"
SKR_MAGIC = ";; SignedKeyResponse 1.0"
OFFLINE_MAGIC = ";; Offline records for"  # keymgr show-offline (no trailer)
_TS = re.compile(r"\s+(\d+)(?:\s|$)")


class SkrFormatError(ValueError):
    """A KSR or SKR text (or SKR blocks to format) is not in the form Knot uses."""


@dataclass(frozen=True)
class KsrBlock:
    """One period of a KSR: the ZSKs Knot wants published from ``timestamp`` on."""

    timestamp: int  # unix seconds
    keys: tuple[Key, ...]
    ttl: int | None = None  # the DNSKEY TTL Knot asked for (its policy's dnskey-ttl)


@dataclass(frozen=True)
class SkrBlock:
    """One period of an SKR: the owner-signed apex key RRsets valid from ``timestamp``."""

    timestamp: int  # unix seconds
    dnskey: dns.rrset.RRset
    dnskey_sigs: dns.rrset.RRset
    cdnskey: dns.rrset.RRset | None = None
    cdnskey_sigs: dns.rrset.RRset | None = None
    cds: dns.rrset.RRset | None = None
    cds_sigs: dns.rrset.RRset | None = None

    @property
    def keys(self) -> frozenset[Key]:
        return frozenset(Key.from_rdata(rd) for rd in self.dnskey if isinstance(rd, DNSKEY))


# --------------------------------------------------------------------------- splitting


def _blocks(
    text: str, magic: str, what: str, *, trailer: bool = True
) -> list[tuple[int, int, str]]:
    """(line number, timestamp, body) per block; the trailer line (when ``trailer``) must
    end the text."""
    blocks: list[tuple[int, int, list[str]]] = []
    trailer_seen = False
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if trailer_seen:
            if stripped:
                raise SkrFormatError(
                    f"{what} line {number}: text after the '{magic} generated' trailer"
                )
            continue
        if line.startswith(magic):
            rest = line[len(magic) :]
            if rest.startswith(" generated"):
                trailer_seen = True
                continue
            match = _TS.match(rest)
            if not match:
                raise SkrFormatError(
                    f"{what} line {number}: block header without a unix timestamp: {line!r}"
                )
            blocks.append((number, int(match.group(1)), []))
            continue
        if not blocks:
            if stripped and not stripped.startswith(";"):
                raise SkrFormatError(
                    f"{what} line {number}: a record before the first '{magic} <time>' header"
                )
            continue
        blocks[-1][2].append(line)
    if trailer and not trailer_seen:
        raise SkrFormatError(
            f"{what} is truncated: it must end with a line starting '{magic} generated'"
        )
    if not blocks and trailer:
        raise SkrFormatError(f"{what} holds no '{magic} <time>' block")
    previous: int | None = None
    for number, ts, _ in blocks:
        if previous is not None and ts <= previous:
            raise SkrFormatError(
                f"{what} line {number}: block time {ts} is not after the previous block's "
                f"{previous}"
            )
        previous = ts
    return [(number, ts, "\n".join(body) + "\n") for number, ts, body in blocks]


def _rrsets(body: str, what: str, number: int) -> list[dns.rrset.RRset]:
    # rdclass=None: records may say "IN" (dnspython's form) or nothing (Knot's); any other
    # class is refused by the reader ("RR class is not zone's class").
    try:
        return dns.zonefile.read_rrsets(
            body, rdclass=None, default_rdclass=dns.rdataclass.IN, relativize=False
        )
    except (dns.exception.DNSException, ValueError) as exc:
        raise SkrFormatError(f"{what} block at line {number}: {exc}") from None


def _check_owner(
    rrset: dns.rrset.RRset, zone: dns.name.Name | None, what: str, number: int
) -> dns.name.Name:
    if zone is not None and rrset.name != zone:
        raise SkrFormatError(
            f"{what} block at line {number}: {rrset.name} {dns.rdatatype.to_text(rrset.rdtype)}"
            f" is not at the zone apex {zone}"
        )
    return rrset.name


def _zone_name(zone: str | dns.name.Name | None) -> dns.name.Name | None:
    if zone is None or isinstance(zone, dns.name.Name):
        return zone
    return dns.name.from_text(zone)


# --------------------------------------------------------------------------- KSR


def parse_ksr(text: str, *, zone: str | dns.name.Name | None = None) -> list[KsrBlock]:
    """The blocks of ``keymgr ZONE generate-ksr`` output, oldest first.

    Raises :class:`SkrFormatError` on anything but DNSKEY records at one apex (``zone``
    when given), a missing trailer (truncated output) or non-ascending block times.
    """
    apex = _zone_name(zone)
    out: list[KsrBlock] = []
    for number, ts, body in _blocks(text, KSR_MAGIC, "KSR"):
        keys: list[Key] = []
        ttl: int | None = None
        for rrset in _rrsets(body, "KSR", number):
            if rrset.rdtype != dns.rdatatype.DNSKEY:
                raise SkrFormatError(
                    f"KSR block at line {number}: unexpected "
                    f"{dns.rdatatype.to_text(rrset.rdtype)} record (only DNSKEY belongs here)"
                )
            apex = _check_owner(rrset, apex, "KSR", number)
            ttl = int(rrset.ttl)
            keys += sorted(Key.from_rdata(rd) for rd in rrset if isinstance(rd, DNSKEY))
        out.append(KsrBlock(ts, tuple(keys), ttl))
    return out


# --------------------------------------------------------------------------- SKR


_APEX_TYPES = {
    dns.rdatatype.DNSKEY: "dnskey",
    dns.rdatatype.CDNSKEY: "cdnskey",
    dns.rdatatype.CDS: "cds",
}


def parse_skr(text: str, *, zone: str | dns.name.Name | None = None) -> list[SkrBlock]:
    """The blocks of an SKR (ours from :func:`format_skr`, or Knot's ``sign-ksr``)."""
    return _parse_signed(_blocks(text, SKR_MAGIC, "SKR"), zone)


def parse_offline(text: str, *, zone: str | dns.name.Name | None = None) -> list[SkrBlock]:
    """The blocks of ``keymgr ZONE show-offline FROM TO``: the imported SKR records in
    effect from each time on (the first block is stamped FROM when an earlier one is still
    in effect; empty output = nothing imported for that window)."""
    return _parse_signed(_blocks(text, OFFLINE_MAGIC, "show-offline", trailer=False), zone)


def _parse_signed(
    blocks: list[tuple[int, int, str]], zone: str | dns.name.Name | None
) -> list[SkrBlock]:
    apex = _zone_name(zone)
    out: list[SkrBlock] = []
    for number, ts, body in blocks:
        found: dict[str, dns.rrset.RRset] = {}
        for rrset in _rrsets(body, "SKR", number):
            apex = _check_owner(rrset, apex, "SKR", number)
            if rrset.rdtype == dns.rdatatype.RRSIG and rrset.covers in _APEX_TYPES:
                field = _APEX_TYPES[rrset.covers] + "_sigs"
            elif rrset.rdtype in _APEX_TYPES:
                field = _APEX_TYPES[rrset.rdtype]
            else:
                raise SkrFormatError(
                    f"SKR block at line {number}: unexpected "
                    f"{dns.rdatatype.to_text(rrset.rdtype)} record"
                )
            if field in found:
                for rdata in rrset:
                    found[field].add(rdata, rrset.ttl)
            else:
                found[field] = rrset
        if "dnskey" not in found or "dnskey_sigs" not in found:
            raise SkrFormatError(
                f"SKR block at line {number} ({iso(ts)}): no DNSKEY RRset with its RRSIG"
            )
        block = SkrBlock(
            ts,
            found["dnskey"],
            found["dnskey_sigs"],
            found.get("cdnskey"),
            found.get("cdnskey_sigs"),
            found.get("cds"),
            found.get("cds_sigs"),
        )
        _check_block(block, apex or block.dnskey.name)
        out.append(block)
    return out


def _check_block(block: SkrBlock, zone: dns.name.Name) -> None:
    where = f"SKR block {block.timestamp} ({iso(block.timestamp)})"
    pairs = (
        ("DNSKEY", dns.rdatatype.DNSKEY, block.dnskey, block.dnskey_sigs),
        ("CDNSKEY", dns.rdatatype.CDNSKEY, block.cdnskey, block.cdnskey_sigs),
        ("CDS", dns.rdatatype.CDS, block.cds, block.cds_sigs),
    )
    for label, rdtype, rrset, sigs in pairs:
        if (rrset is None) != (sigs is None) or (rrset is not None and not len(rrset)):
            raise SkrFormatError(f"{where}: a {label} RRset needs its RRSIGs and vice versa")
        if rrset is None or sigs is None:
            continue
        if rrset.rdtype != rdtype or rrset.name != zone:
            raise SkrFormatError(
                f"{where}: {label} must be a {label} RRset at {zone}, got "
                f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)}"
            )
        if sigs.rdtype != dns.rdatatype.RRSIG or sigs.covers != rdtype or sigs.name != zone:
            raise SkrFormatError(f"{where}: {label} signatures must be RRSIGs covering {label}")
        if not len(sigs):
            raise SkrFormatError(f"{where}: no RRSIG over the {label} RRset")


def format_skr(
    zone: str | dns.name.Name, blocks: Sequence[SkrBlock], *, generated_at: int | None = None
) -> str:
    """The SKR text ``keymgr ZONE import-skr`` accepts: one block per period, records one
    per line, the ``generated`` trailer last. Raises :class:`SkrFormatError` for blocks
    that are not strictly ascending in time or not apex key RRsets of ``zone``."""
    apex = _zone_name(zone)
    assert apex is not None
    if not blocks:
        raise SkrFormatError("an SKR needs at least one block")
    lines: list[str] = []
    previous: int | None = None
    for block in blocks:
        if previous is not None and block.timestamp <= previous:
            raise SkrFormatError(
                f"SKR block times must ascend: {block.timestamp} follows {previous}"
            )
        previous = block.timestamp
        _check_block(block, apex)
        lines.append(f"{SKR_MAGIC} {block.timestamp} ({iso(block.timestamp)}) =========")
        for rrset in (
            block.dnskey,
            block.cdnskey,
            block.cds,
            block.dnskey_sigs,
            block.cdnskey_sigs,
            block.cds_sigs,
        ):
            if rrset is not None:
                lines += _record_lines(rrset)
    at = f" at {iso(generated_at)}" if generated_at is not None else ""
    lines.append(f"{SKR_MAGIC} generated{at} by multisigner")
    return "\n".join(lines) + "\n"


def _record_lines(rrset: dns.rrset.RRset) -> list[str]:
    # Sorted so the same RRsets always give the same text (dnspython keeps insertion order).
    return sorted(rrset.to_text().splitlines())


# --------------------------------------------------------------------------- checks


def check_skr_signature_windows(
    blocks: Sequence[SkrBlock], *, until: int | None = None
) -> list[str]:
    """Problems (empty = fine) with the RRSIG validity of an SKR: every RRSIG of a block
    must be valid from the block's time until the next block's time (the last block: until
    ``until``, when given), or resolvers see expired or not-yet-valid signatures between
    blocks. (Knot's own ``sign-ksr`` starts inception 1.5 h before each block and adds
    refresh blocks every ``rrsig-refresh`` for this reason.)"""
    problems: list[str] = []
    for index, block in enumerate(blocks):
        end = blocks[index + 1].timestamp if index + 1 < len(blocks) else until
        for label, sigs in (
            ("DNSKEY", block.dnskey_sigs),
            ("CDNSKEY", block.cdnskey_sigs),
            ("CDS", block.cds_sigs),
        ):
            for sig in sigs or ():
                if sig.inception > block.timestamp:
                    problems.append(
                        f"SKR block {block.timestamp} ({iso(block.timestamp)}): RRSIG {label} "
                        f"by key tag {sig.key_tag} is valid only from {iso(sig.inception)}"
                    )
                if end is not None and sig.expiration < end:
                    problems.append(
                        f"SKR block {block.timestamp} ({iso(block.timestamp)}): RRSIG {label} "
                        f"by key tag {sig.key_tag} expires {iso(sig.expiration)}, before "
                        f"{iso(end)} (add a refresh block)"
                    )
    return problems
