"""providers.knot.skr: Knot's KSR/SKR text formats, parsed and written without I/O.

The samples are verbatim output of Knot DNS 3.2.6 (``keymgr generate-ksr``, ``keymgr
sign-ksr`` with a Knot-held KSK, ``keymgr show-offline``); the round trips use real
dnspython signatures.
"""

from __future__ import annotations

import dataclasses
from functools import cache

import dns.dnssec
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.keys import Key
from core.keyset import KeySetError, SignedKeyBlock, SignedKeySet, SignedRRset, lacking_keys
from providers.knot.keyset import from_skr_blocks, skr_text, to_skr_blocks
from providers.knot.skr import (
    KsrBlock,
    SkrBlock,
    SkrFormatError,
    check_skr_signature_windows,
    format_skr,
    iso,
    parse_ksr,
    parse_offline,
    parse_skr,
)

ZONE = dns.name.from_text("example.test.")
KNOT_ZSK_TAG = 29465
KNOT_KSK_TAG = 2842

KNOT_KSR = (
    ";; KeySigningRequest 1.0 1795612533 (2026-11-25T13:15:33Z) =========\n"
    "example.test.       \t2 DNSKEY 256 3 13 (\n"
    "\t\t\t\tL/qkJKY7dT1JWlGx18J29+VCCHbuB0ynV2ZFZLYD\n"
    "\t\t\t\tF7DneSI7n5E6Lm12HIJWdU7Li/sWPo4/WrDMAfrj\n"
    "\t\t\t\tX80+PQ==\n"
    "\t\t\t\t) ; ZSK, ECDSAP256SHA256 (256b), id = 29465\n"
    ";; KeySigningRequest 1.0 1796822133 (2026-12-09T13:15:33Z) =========\n"
    "example.test.       \t2 DNSKEY 256 3 13 (\n"
    "\t\t\t\tL/qkJKY7dT1JWlGx18J29+VCCHbuB0ynV2ZFZLYD\n"
    "\t\t\t\tF7DneSI7n5E6Lm12HIJWdU7Li/sWPo4/WrDMAfrj\n"
    "\t\t\t\tX80+PQ==\n"
    "\t\t\t\t) ; ZSK, ECDSAP256SHA256 (256b), id = 29465\n"
    ";; KeySigningRequest 1.0 generated at 2026-11-25T13:15:33Z by Knot DNS 3.2.6\n"
)

KNOT_SKR = (
    ";; SignedKeyResponse 1.0 1795612533 (2026-11-25T13:15:33Z) =========\n"
    "example.test.       \t2 DNSKEY 256 3 13 (\n"
    "\t\t\t\tL/qkJKY7dT1JWlGx18J29+VCCHbuB0ynV2ZFZLYD\n"
    "\t\t\t\tF7DneSI7n5E6Lm12HIJWdU7Li/sWPo4/WrDMAfrj\n"
    "\t\t\t\tX80+PQ==\n"
    "\t\t\t\t) ; ZSK, ECDSAP256SHA256 (256b), id = 29465\n"
    "example.test.       \t2 DNSKEY 257 3 13 (\n"
    "\t\t\t\tyc2PxxNt+IocMqC6Qpr/OcQS7HdeTZ1DdbAJ3Rhi\n"
    "\t\t\t\tdMsHfENJKBDbJTHCc5VCuNmwGM44K7Dx59lO9F/X\n"
    "\t\t\t\tlnKrJw==\n"
    "\t\t\t\t) ; KSK, ECDSAP256SHA256 (256b), id = 2842\n"
    "example.test.       \t0 CDNSKEY 257 3 13 (\n"
    "\t\t\t\tyc2PxxNt+IocMqC6Qpr/OcQS7HdeTZ1DdbAJ3Rhi\n"
    "\t\t\t\tdMsHfENJKBDbJTHCc5VCuNmwGM44K7Dx59lO9F/X\n"
    "\t\t\t\tlnKrJw==\n"
    "\t\t\t\t) ; KSK, ECDSAP256SHA256 (256b), id = 2842\n"
    "example.test.       \t0 CDS 2842 13 2 (\n"
    "\t\t\t\t2D528C9F6583DAD1CFE8EC4435CE2A3FE1A6C1E5\n"
    "\t\t\t\t8CFD16406DA52C09799206BD\n"
    "\t\t\t\t)\n"
    "example.test.       \t2 RRSIG DNSKEY 13 2 2 20261209131533 (\n"
    "\t\t\t\t20261125114533 2842 example.test.\n"
    "\t\t\t\tNLZ+9PuThLSgyf+R9BtOuobJb61M8WRRxRo28aIF\n"
    "\t\t\t\tmYTHdlATVg7t7U6vWzbi0MUsYnz5eQN7DIv/LiAC\n"
    "\t\t\t\tngaS7g==\n"
    "\t\t\t\t)\n"
    "example.test.       \t0 RRSIG CDS 13 2 0 20261209131533 (\n"
    "\t\t\t\t20261125114533 2842 example.test.\n"
    "\t\t\t\t+DGIwuCsn+ipGtPkSdQ3AWmfld74xf3w19EFBKoo\n"
    "\t\t\t\tfWqmFQudVA9/Cv6R2upudI1ZMu6RPG2TB/YEsjvz\n"
    "\t\t\t\tsVWv9g==\n"
    "\t\t\t\t)\n"
    "example.test.       \t0 RRSIG CDNSKEY 13 2 0 20261209131533 (\n"
    "\t\t\t\t20261125114533 2842 example.test.\n"
    "\t\t\t\tdcGsQdJDEPKLxr/dCpS6YGVXEHljcTT1Jc90F0xY\n"
    "\t\t\t\tZyEtB+nayMbkOoGmUEfFQiLL33iI7mGqnCjkvbWq\n"
    "\t\t\t\tEN37gQ==\n"
    "\t\t\t\t)\n"
    ";; SignedKeyResponse 1.0 1796217333 (2026-12-02T13:15:33Z) =========\n"
    "example.test.       \t2 DNSKEY 256 3 13 (\n"
    "\t\t\t\tL/qkJKY7dT1JWlGx18J29+VCCHbuB0ynV2ZFZLYD\n"
    "\t\t\t\tF7DneSI7n5E6Lm12HIJWdU7Li/sWPo4/WrDMAfrj\n"
    "\t\t\t\tX80+PQ==\n"
    "\t\t\t\t) ; ZSK, ECDSAP256SHA256 (256b), id = 29465\n"
    "example.test.       \t2 DNSKEY 257 3 13 (\n"
    "\t\t\t\tyc2PxxNt+IocMqC6Qpr/OcQS7HdeTZ1DdbAJ3Rhi\n"
    "\t\t\t\tdMsHfENJKBDbJTHCc5VCuNmwGM44K7Dx59lO9F/X\n"
    "\t\t\t\tlnKrJw==\n"
    "\t\t\t\t) ; KSK, ECDSAP256SHA256 (256b), id = 2842\n"
    "example.test.       \t0 CDNSKEY 257 3 13 (\n"
    "\t\t\t\tyc2PxxNt+IocMqC6Qpr/OcQS7HdeTZ1DdbAJ3Rhi\n"
    "\t\t\t\tdMsHfENJKBDbJTHCc5VCuNmwGM44K7Dx59lO9F/X\n"
    "\t\t\t\tlnKrJw==\n"
    "\t\t\t\t) ; KSK, ECDSAP256SHA256 (256b), id = 2842\n"
    "example.test.       \t0 CDS 2842 13 2 (\n"
    "\t\t\t\t2D528C9F6583DAD1CFE8EC4435CE2A3FE1A6C1E5\n"
    "\t\t\t\t8CFD16406DA52C09799206BD\n"
    "\t\t\t\t)\n"
    "example.test.       \t2 RRSIG DNSKEY 13 2 2 20261216131533 (\n"
    "\t\t\t\t20261202114533 2842 example.test.\n"
    "\t\t\t\tn5twNmE+jR9UBdB6SUoS26hLN4n6+60T9YdeBBZ5\n"
    "\t\t\t\tL4gqUKygMLYlcSDze6FSbFCEg5t7fXl7177bpoUI\n"
    "\t\t\t\tFn7ZEw==\n"
    "\t\t\t\t)\n"
    "example.test.       \t0 RRSIG CDS 13 2 0 20261216131533 (\n"
    "\t\t\t\t20261202114533 2842 example.test.\n"
    "\t\t\t\tUFAgS6u+q7zVdP7G2aAtAhYNbdbhJJHf25kW+k40\n"
    "\t\t\t\to7B1MNM2L5FYRmSEmYLMCVnmb9nH4goNqwdW9Kf6\n"
    "\t\t\t\thkZtFg==\n"
    "\t\t\t\t)\n"
    "example.test.       \t0 RRSIG CDNSKEY 13 2 0 20261216131533 (\n"
    "\t\t\t\t20261202114533 2842 example.test.\n"
    "\t\t\t\tbHkLotaoguKGx58Rk6OAFs/L1HtXEAIGNzg0VTq7\n"
    "\t\t\t\trm7JKEgJIpgMZt1Tg3ggTDwHxdKVHnvZq9NfA/qm\n"
    "\t\t\t\tulUWpA==\n"
    "\t\t\t\t)\n"
    ";; SignedKeyResponse 1.0 generated at 2026-11-25T13:15:33Z by Knot DNS 3.2.6\n"
)

KNOT_SHOW_OFFLINE = (
    ";; Offline records for 1796822133 (2026-12-09T13:15:33Z) =========\n"
    "example.test.       \t2 DNSKEY 256 3 13 (\n"
    "\t\t\t\tL/qkJKY7dT1JWlGx18J29+VCCHbuB0ynV2ZFZLYD\n"
    "\t\t\t\tF7DneSI7n5E6Lm12HIJWdU7Li/sWPo4/WrDMAfrj\n"
    "\t\t\t\tX80+PQ==\n"
    "\t\t\t\t) ; ZSK, ECDSAP256SHA256 (256b), id = 29465\n"
    "example.test.       \t2 DNSKEY 257 3 13 (\n"
    "\t\t\t\tyc2PxxNt+IocMqC6Qpr/OcQS7HdeTZ1DdbAJ3Rhi\n"
    "\t\t\t\tdMsHfENJKBDbJTHCc5VCuNmwGM44K7Dx59lO9F/X\n"
    "\t\t\t\tlnKrJw==\n"
    "\t\t\t\t) ; KSK, ECDSAP256SHA256 (256b), id = 2842\n"
    "example.test.       \t0 CDNSKEY 257 3 13 (\n"
    "\t\t\t\tyc2PxxNt+IocMqC6Qpr/OcQS7HdeTZ1DdbAJ3Rhi\n"
    "\t\t\t\tdMsHfENJKBDbJTHCc5VCuNmwGM44K7Dx59lO9F/X\n"
    "\t\t\t\tlnKrJw==\n"
    "\t\t\t\t) ; KSK, ECDSAP256SHA256 (256b), id = 2842\n"
    "example.test.       \t0 CDS 2842 13 2 (\n"
    "\t\t\t\t2D528C9F6583DAD1CFE8EC4435CE2A3FE1A6C1E5\n"
    "\t\t\t\t8CFD16406DA52C09799206BD\n"
    "\t\t\t\t)\n"
    "example.test.       \t2 RRSIG DNSKEY 13 2 2 20261223131533 (\n"
    "\t\t\t\t20261209114533 2842 example.test.\n"
    "\t\t\t\t+yThv2UfQDfmqU9d3YKHIaLyst4G6wpP+f5OflMW\n"
    "\t\t\t\tYueU5vToyD/k6zFqKk6YHlBG4Iycy3Q2NDrv2uj/\n"
    "\t\t\t\tsb7zgw==\n"
    "\t\t\t\t)\n"
    "example.test.       \t0 RRSIG CDS 13 2 0 20261223131533 (\n"
    "\t\t\t\t20261209114533 2842 example.test.\n"
    "\t\t\t\typJowcLeCQLG2XZ1xNMHWk9XE4kD+kHbOXXKbszz\n"
    "\t\t\t\tqq8keL0nl+lp6gbYSJquP22ddmVxjoRA4Yj3B7Fo\n"
    "\t\t\t\tlT5mVA==\n"
    "\t\t\t\t)\n"
    "example.test.       \t0 RRSIG CDNSKEY 13 2 0 20261223131533 (\n"
    "\t\t\t\t20261209114533 2842 example.test.\n"
    "\t\t\t\tx6Iofw/XyxQhk5Gc/f30w5cT7OIuIiqiTipT1PX3\n"
    "\t\t\t\taELoQzBqjjCVtkVKyatYzokATe39P/xA+KxKhjkD\n"
    "\t\t\t\t0Li0hw==\n"
    "\t\t\t\t)\n"
)


# ------------------------------------------------------------------ keys and signing


@cache
def _private(index: int) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def dnskey(index: int, *, ksk: bool = False) -> dns.rdata.Rdata:
    return dns.dnssec.make_dnskey(_private(index).public_key(), 13, 257 if ksk else 256)


KSK = 0  # key 0 is the owner KSK, keys 1.. are ZSKs


def rrset(
    rdtype: dns.rdatatype.RdataType, ttl: int, rdatas: list[dns.rdata.Rdata]
) -> dns.rrset.RRset:
    out = dns.rrset.RRset(ZONE, dns.rdataclass.IN, rdtype)
    for rd in rdatas:
        out.add(rd, ttl)
    return out


def sign(data: dns.rrset.RRset, ts: int) -> dns.rrset.RRset:
    sig = dns.dnssec.sign(
        data,
        _private(KSK),
        ZONE,
        dnskey(KSK, ksk=True),
        inception=ts - 5400,
        expiration=ts + 14 * 86400,
    )
    out = dns.rrset.RRset(ZONE, dns.rdataclass.IN, dns.rdatatype.RRSIG, data.rdtype)
    out.add(sig, data.ttl)
    return out


def block(ts: int, zsks: list[int], *, ttl: int = 300, cds: bool = True) -> SkrBlock:
    keys = rrset(dns.rdatatype.DNSKEY, ttl, [dnskey(KSK, ksk=True)] + [dnskey(i) for i in zsks])
    if not cds:
        return SkrBlock(ts, keys, sign(keys, ts))
    ksk = dnskey(KSK, ksk=True)
    cdnskey = rrset(
        dns.rdatatype.CDNSKEY,
        0,
        [dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.CDNSKEY, ksk.to_text())],
    )
    cds_set = rrset(dns.rdatatype.CDS, 0, [dns.dnssec.make_cds(ZONE, ksk, "SHA256")])
    return SkrBlock(
        ts, keys, sign(keys, ts), cdnskey, sign(cdnskey, ts), cds_set, sign(cds_set, ts)
    )


def ttls(blocks: list[SkrBlock]) -> list[tuple[int | None, ...]]:
    fields = ("dnskey", "dnskey_sigs", "cdnskey", "cdnskey_sigs", "cds", "cds_sigs")
    return [
        tuple(None if getattr(b, f) is None else getattr(b, f).ttl for f in fields) for b in blocks
    ]


# ------------------------------------------------------------------ Knot's own output


def test_parse_knot_ksr() -> None:
    blocks = parse_ksr(KNOT_KSR, zone="example.test.")
    assert [b.timestamp for b in blocks] == [1795612533, 1796822133]
    assert all(len(b.keys) == 1 and b.ttl == 2 for b in blocks)
    (key,) = blocks[0].keys
    assert key.key_tag == KNOT_ZSK_TAG and key.flags == 256 and key.algorithm == 13
    assert blocks[0].keys == blocks[1].keys


def test_parse_knot_sign_ksr_output_and_its_signatures_validate() -> None:
    blocks = parse_skr(KNOT_SKR, zone=ZONE)
    assert [b.timestamp for b in blocks] == [1795612533, 1796217333]
    for b in blocks:
        assert {k.key_tag for k in b.keys} == {KNOT_ZSK_TAG, KNOT_KSK_TAG}
        assert b.cds is not None and b.cdnskey is not None
        assert b.cds.ttl == 0 and b.cdnskey.ttl == 0 and b.dnskey.ttl == 2
        keys = {ZONE: b.dnskey}
        for data, sigs in (
            (b.dnskey, b.dnskey_sigs),
            (b.cds, b.cds_sigs),
            (b.cdnskey, b.cdnskey_sigs),
        ):
            assert sigs is not None
            (sig,) = sigs
            assert sig.key_tag == KNOT_KSK_TAG
            assert sig.inception == b.timestamp - 5400  # sign-ksr: 1.5 h before the block
            dns.dnssec.validate(data, sigs, keys, now=b.timestamp)
    # and our one-line form of it reads back the same
    again = parse_skr(format_skr(ZONE, blocks))
    assert again == blocks and ttls(again) == ttls(blocks)


def test_parse_show_offline() -> None:
    (b,) = parse_offline(KNOT_SHOW_OFFLINE, zone="example.test.")
    assert b.timestamp == 1796822133
    assert {k.key_tag for k in b.keys} == {KNOT_ZSK_TAG, KNOT_KSK_TAG}
    assert parse_offline("") == []


# ------------------------------------------------------------------ round trips

stamps = st.lists(
    st.integers(min_value=1_600_000_000, max_value=2_500_000_000),
    min_size=1,
    max_size=4,
    unique=True,
).map(sorted)
zsk_sets = st.lists(st.integers(min_value=1, max_value=4), min_size=0, max_size=4, unique=True)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stamps=stamps,
    data=st.data(),
    ttl=st.integers(min_value=0, max_value=86400),
    cds=st.booleans(),
)
def test_skr_round_trip(stamps: list[int], data: st.DataObject, ttl: int, cds: bool) -> None:
    blocks = [block(ts, data.draw(zsk_sets), ttl=ttl, cds=cds) for ts in stamps]
    text = format_skr("example.test.", blocks, generated_at=stamps[0])
    lines = text.splitlines()
    assert lines[-1].startswith(";; SignedKeyResponse 1.0 generated at ")
    assert all(
        ln.startswith(";; SignedKeyResponse 1.0 ") or ln.startswith("example.test. ")
        for ln in lines
    )
    parsed = parse_skr(text, zone="example.test.")
    assert parsed == blocks
    assert ttls(parsed) == ttls(blocks)
    assert [b.keys for b in parsed] == [b.keys for b in blocks]
    assert format_skr(ZONE, parsed, generated_at=stamps[0]) == text  # canonical text
    for b in parsed:
        dns.dnssec.validate(b.dnskey, b.dnskey_sigs, {ZONE: b.dnskey}, now=b.timestamp)


def knot_style_ksr(blocks: list[tuple[int, list[int]]], ttl: int) -> str:
    """KSR text laid out like keymgr's (multi-line parentheses, comments, tabs)."""
    out = []
    for ts, zsks in blocks:
        out.append(f";; KeySigningRequest 1.0 {ts} ({iso(ts)}) =========")
        for i in zsks:
            rd = dnskey(i)
            b64 = Key.from_rdata(rd).text.split()[3]  # type: ignore[arg-type]
            chunks = [b64[j : j + 40] for j in range(0, len(b64), 40)]
            out.append(f"example.test.       \t{ttl} DNSKEY 256 3 13 (")
            out += [f"\t\t\t\t{c}" for c in chunks]
            out.append(f"\t\t\t\t) ; ZSK, ECDSAP256SHA256 (256b), id = {dns.dnssec.key_id(rd)}")
    out.append(";; KeySigningRequest 1.0 generated at 2026-11-25T13:15:26Z by Knot DNS 3.2.6")
    return "\n".join(out) + "\n"


@settings(max_examples=40, deadline=None)
@given(stamps=stamps, data=st.data(), ttl=st.integers(min_value=0, max_value=86400))
def test_ksr_parse(stamps: list[int], data: st.DataObject, ttl: int) -> None:
    spec = [(ts, data.draw(zsk_sets)) for ts in stamps]
    parsed = parse_ksr(knot_style_ksr(spec, ttl), zone=ZONE)
    assert [b.timestamp for b in parsed] == stamps
    for b, (_, zsks) in zip(parsed, spec, strict=True):
        assert set(b.keys) == {Key.from_rdata(dnskey(i)) for i in zsks}  # type: ignore[arg-type]
        assert b.ttl == (ttl if zsks else None)
        assert list(b.keys) == sorted(b.keys)


# ------------------------------------------------------------------ what is refused

TRAILER = ";; SignedKeyResponse 1.0 generated at 2026-11-25T13:15:33Z by Knot DNS 3.2.6\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (KNOT_KSR.replace(KNOT_KSR.splitlines()[-1] + "\n", ""), "truncated"),
        (KNOT_KSR + "example.test. 2 DNSKEY 256 3 13 AAAA\n", "after the"),
        ("example.test. 2 DNSKEY 256 3 13 AAAA\n" + KNOT_KSR, "before the first"),
        (KNOT_KSR.replace("1796822133", "1795612533"), "not after"),
        (KNOT_KSR.replace("1.0 1796822133", "1.0 soon"), "without a unix timestamp"),
        (KNOT_KSR.replace("\t2 DNSKEY 256 3 13 (", "\t2 CDNSKEY 256 3 13 (", 1), "only DNSKEY"),
        (KNOT_KSR.replace("example.test.  ", "other.test.   ", 1), "not at the zone apex"),
        (
            KNOT_KSR.replace("\t2 DNSKEY 256 3 13 (", "\t2 CH DNSKEY 256 3 13 (", 1),
            "RR class is not",
        ),
        (KNOT_KSR.replace("X80+PQ==", "X80+PQ=", 1), "KSR block at line"),
        (";; KeySigningRequest 1.0 generated at 2026\n", "no"),
    ],
)
def test_bad_ksr(text: str, message: str) -> None:
    with pytest.raises(SkrFormatError, match=message):
        parse_ksr(text, zone="example.test.")


def test_ksr_owner_must_be_one_apex_without_zone() -> None:
    text = KNOT_KSR.replace("example.test.  ", "other.test.   ", 1)
    with pytest.raises(SkrFormatError, match="apex"):
        parse_ksr(text)


def _skr_without(kind: str) -> str:
    text = format_skr(ZONE, [block(1795612533, [1])])
    return "\n".join(ln for ln in text.splitlines() if kind not in ln) + "\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_skr_without("RRSIG DNSKEY"), "no DNSKEY RRset with its RRSIG"),
        (_skr_without("IN DNSKEY"), "no DNSKEY RRset with its RRSIG"),
        (_skr_without("RRSIG CDS"), "CDS RRset needs its RRSIGs"),
        (_skr_without("IN CDNSKEY"), "CDNSKEY RRset needs its RRSIGs"),
        (_skr_without("generated"), "must end with a line starting"),
        (
            _skr_without("xx").replace(
                ";; SignedKeyResponse 1.0 generated",
                "example.test. 2 IN A 192.0.2.1\n;; SignedKeyResponse 1.0 generated",
            ),
            "unexpected A record",
        ),
    ],
)
def test_bad_skr(text: str, message: str) -> None:
    with pytest.raises(SkrFormatError, match=message):
        parse_skr(text, zone="example.test.")


def test_format_refuses_what_knot_would_not_take() -> None:
    good = block(1795612533, [1])
    with pytest.raises(SkrFormatError, match="at least one block"):
        format_skr(ZONE, [])
    with pytest.raises(SkrFormatError, match="must ascend"):
        format_skr(ZONE, [good, good])
    with pytest.raises(SkrFormatError, match=r"at other\.test\."):
        format_skr("other.test.", [good])
    with pytest.raises(SkrFormatError, match="RRSIGs covering DNSKEY"):
        format_skr(ZONE, [dataclasses.replace(good, dnskey_sigs=good.cds_sigs)])
    with pytest.raises(SkrFormatError, match="needs its RRSIGs"):
        format_skr(ZONE, [dataclasses.replace(good, cds_sigs=None)])
    # without generated_at the trailer still starts as Knot requires
    assert format_skr(ZONE, [good]).splitlines()[-1] == (
        ";; SignedKeyResponse 1.0 generated by multisigner"
    )


# ------------------------------------------------------------------ the ZSK check


def test_lacking_keys() -> None:
    zsk = [Key.from_rdata(dnskey(i)) for i in range(1, 4)]  # type: ignore[arg-type]
    blocks = [block(1795612533, [1, 2]), block(1796217333, [1, 2, 3]), block(1796822133, [2])]
    signed = from_skr_blocks(ZONE, blocks).blocks
    assert lacking_keys(signed, {zsk[0], zsk[1]}) == [
        f"block 1796822133 (2026-12-09T13:15:33Z): the DNSKEY RRset lacks {zsk[0].short()}; "
        "a provider signing with it would serve data no resolver can validate"
    ]
    problems = lacking_keys(signed, set(zsk))
    assert len(problems) == 2 and zsk[2].short() in problems[0]
    assert lacking_keys(signed, {zsk[1]}) == []
    assert lacking_keys([], set()) == ["the key set has no blocks"]
    knot = from_skr_blocks(ZONE, parse_skr(KNOT_SKR))
    assert lacking_keys(knot.blocks, {Key.from_rdata(dnskey(1))})  # type: ignore[arg-type]


# ------------------------------------------------------- the provider-neutral key set


def test_keyset_round_trips_through_an_skr() -> None:
    blocks = [block(1795612533, [1, 2]), block(1796217333, [1], cds=False)]
    keyset = from_skr_blocks("example.test.", blocks)
    assert [b.valid_from for b in keyset.blocks] == [1795612533, 1796217333]
    assert keyset.blocks[1].cds is None and keyset.blocks[1].cdnskey is None
    assert keyset.blocks[0].keys == blocks[0].keys
    assert to_skr_blocks(keyset) == blocks
    text = skr_text(keyset)
    assert parse_skr(text, zone=ZONE) == blocks
    assert text.splitlines()[-1] == ";; SignedKeyResponse 1.0 generated by multisigner"


def test_keyset_refuses_what_no_provider_could_serve() -> None:
    good = block(1795612533, [1])
    assert good.cds is not None and good.cds_sigs is not None and good.cdnskey is not None
    dnskey_set = SignedRRset(good.dnskey, good.dnskey_sigs)
    with pytest.raises(KeySetError, match="RRSIGs at that name covering DNSKEY"):
        SignedRRset(good.dnskey, good.cds_sigs)
    empty = good.dnskey_sigs.copy()
    empty.clear()
    with pytest.raises(KeySetError, match="no RRSIG over the DNSKEY RRset"):
        SignedRRset(good.dnskey, empty)
    with pytest.raises(KeySetError, match="the cds field holds a CDNSKEY RRset"):
        SignedKeyBlock(1, dnskey_set, cds=SignedRRset(good.cdnskey, good.cdnskey_sigs))
    first = SignedKeyBlock(2, dnskey_set)
    with pytest.raises(KeySetError, match="at least one block"):
        SignedKeySet("example.test.", ())
    with pytest.raises(KeySetError, match="must ascend"):
        SignedKeySet("example.test.", (first, SignedKeyBlock(2, dnskey_set)))
    with pytest.raises(KeySetError, match=r"holds the DNSKEY RRset of example\.test\."):
        SignedKeySet("other.test.", (first,))
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.valid_from = 3  # type: ignore[misc]


def test_blocks_are_plain_values() -> None:
    ksr = KsrBlock(1, (Key.from_rdata(dnskey(1)),))  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ksr.timestamp = 2  # type: ignore[misc]


def test_check_skr_signature_windows() -> None:
    # block() signs from ts - 1.5 h to ts + 14 d
    day = 86400
    ok = [block(1795612533, [1]), block(1795612533 + 7 * day, [1])]
    assert check_skr_signature_windows(ok, until=1795612533 + 21 * day) == []
    gap = [block(1795612533, [1]), block(1795612533 + 15 * day, [1])]
    (problem,) = [p for p in check_skr_signature_windows(gap) if "RRSIG DNSKEY" in p]
    assert "expires 2026-12-09T13:15:33Z" in problem and "refresh block" in problem
    late = check_skr_signature_windows(ok, until=1795612533 + 22 * day)
    assert len(late) == 3  # DNSKEY, CDNSKEY and CDS RRSIGs of the last block
    early = dataclasses.replace(ok[0], timestamp=1795612533 - 2 * 3600)
    assert any("valid only from" in p for p in check_skr_signature_windows([early]))
    assert check_skr_signature_windows(parse_skr(KNOT_SKR), until=1796822133) == []
