"""KnotProvider against real Knot DNS 3.2 servers in offline-KSK mode (Model 1).

Two Knot instances hold their own ZSKs; a file-based owner KSK signs the combined DNSKEY
RRset (owner KSK + both ZSKs) and CDS/CDNSKEY into an SKR, which both import. Everything
is checked by querying the servers directly and validating with dnspython.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import dns.dnssec
import dns.rcode
import pytest
from knotkit import (
    NEEDS_KNOT,
    TTL,
    ZONE,
    ZONE_TEXT,
    OwnerKsk,
    combined_skr,
    keyset,
    provider,
    served,
    skr_text,
    validates,
)

from core.errors import ProviderError, ProviderUnreachable, Refused, ZoneMissing
from core.keys import Key
from core.keyset import lacking_keys
from multisigner_lab import dnsq
from multisigner_lab.errors import LabError
from multisigner_lab.knot import KnotInstance
from providers.base import Capability
from providers.knot.adapter import KnotProvider
from providers.knot.skr import (
    SkrBlock,
    check_skr_signature_windows,
    parse_skr,
)

pytestmark = [pytest.mark.lab, NEEDS_KNOT]

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def own_zsk(p: KnotProvider) -> Key:
    state = run(p.read_zone(ZONE_TEXT))
    (key,) = [k.key for k in state.own_keys if k.active]
    return key


def import_both(
    knots: tuple[KnotInstance, KnotInstance], owner: OwnerKsk
) -> tuple[list[SkrBlock], list[Key]]:
    """KSRs from both, the combined SKR imported into both; (blocks, [zsk0, zsk1])."""
    providers = [provider(k) for k in knots]
    ksrs = [run(p.key_signing_request(ZONE_TEXT)) for p in providers]
    blocks = combined_skr(ksrs, [owner])
    zsks = [own_zsk(p) for p in providers]
    assert lacking_keys(keyset(blocks).blocks, set(zsks)) == []
    assert check_skr_signature_windows(blocks) == []
    for p in providers:
        run(p.serve_signed_keyset(ZONE_TEXT, keyset(blocks)))
    return blocks, zsks


# ------------------------------------------------------------------------ reading


def test_capabilities() -> None:
    assert KnotProvider.capabilities == (
        Capability.SIGN_EXTERNAL_DNSKEY_SET | Capability.GENERATE_KEYS | Capability.MANAGE_NS
        | Capability.WRITE_RRSETS
    )
    assert not KnotProvider.capabilities & Capability.IMPORT_FOREIGN_DNSKEY


def test_read_zone_lists_the_pregenerated_zsk(knots: tuple[KnotInstance, KnotInstance]) -> None:
    k0, _ = knots
    p = provider(k0)
    run(p.check_access())
    state = run(p.read_zone(ZONE_TEXT))
    assert state.provider == "k0"
    (key,) = state.own_keys
    assert key.role == "zsk" and key.active and key.published
    assert key.key.flags == 256 and key.key.algorithm == 13
    # the public key is the one keymgr prints for that key id
    assert key.key == Key.parse(
        k0.keymgr(ZONE_TEXT, "dnskey", f"id={key.key_id}").split(None, 2)[2]
    )
    assert state.foreign_dnskeys == state.cds == state.cdnskey == frozenset()
    assert state.signing_ksks == frozenset()  # the owner holds the only KSK


def test_unknown_zone_is_zone_missing(knots: tuple[KnotInstance, KnotInstance]) -> None:
    # keymgr lists nothing (exit 0) for a zone Knot does not know; knotc tells.
    with pytest.raises(ZoneMissing, match=r"nosuch\.test\."):
        run(provider(knots[0]).read_zone("nosuch.test."))


def test_key_signing_request_parses(knots: tuple[KnotInstance, KnotInstance]) -> None:
    k0, _ = knots
    p = provider(k0)
    zsk = own_zsk(p)
    before = int(time.time())
    blocks = run(p.key_signing_request(ZONE_TEXT, "+0", "+14d", algorithm="ECDSAP256SHA256"))
    assert len(blocks) >= 1
    assert blocks[0].timestamp >= before - 1
    assert blocks[-1].timestamp <= before + 14 * 86400 + 2
    assert all(b.keys == (zsk,) and b.ttl == TTL for b in blocks)
    # absolute unix times work as well
    again = run(p.key_signing_request(ZONE_TEXT, before, before + 86400))
    assert again[0].keys == (zsk,)


def test_zsk_of_another_algorithm_is_reported(tmp_path: Path) -> None:
    # A Knot whose policy says Ed25519 while the zone is signed with ECDSA P-256
    # (keymgr alone: the server need not run to answer a KSR).
    k2 = KnotInstance.create("k2", tmp_path / "k2", algorithm="ed25519")
    p = provider(k2)
    tag = int(k2.keymgr(ZONE_TEXT, "list").split()[1])
    with pytest.raises(ProviderError) as err:
        run(p.key_signing_request(ZONE_TEXT, algorithm="ECDSAP256SHA256"))
    text = str(err.value)
    assert "'k2'" in text and ZONE_TEXT in text and f"key tag {tag}" in text
    assert "ED25519 (15)" in text and "ECDSAP256SHA256 (13)" in text
    # without an expected algorithm the KSR is returned as it is
    blocks = run(p.key_signing_request(ZONE_TEXT))
    assert {k.algorithm for k in blocks[0].keys} == {15}
    assert {k.algorithm for k in run(p.key_signing_request(ZONE_TEXT, algorithm=15))[0].keys} == {
        15
    }


def test_create_key_refuses_a_ksk(knots: tuple[KnotInstance, KnotInstance]) -> None:
    with pytest.raises(ProviderError, match="holds only ZSKs"):
        run(
            provider(knots[0]).create_key(
                ZONE_TEXT, "ksk", "ECDSAP256SHA256", active=True, published=True
            )
        )


# ------------------------------------------------------------------------ the SKR


def test_combined_skr_is_served_by_both(
    knots: tuple[KnotInstance, KnotInstance], owner: OwnerKsk
) -> None:
    k0, k1 = knots
    # No SKR yet: an offline-KSK zone does not load, Knot answers SERVFAIL.
    resp = dnsq.query(k0.address, k0.port, ZONE_TEXT, "SOA")
    assert resp.rcode() == dns.rcode.SERVFAIL
    assert not run(provider(k0).zone_loaded(ZONE_TEXT))

    started = time.monotonic()
    blocks, zsks = import_both(knots, owner)  # first import: zone-reload path
    first_import = time.monotonic() - started
    combined = {owner.key, *zsks}
    assert zsks[0] != zsks[1]
    assert all(run(provider(k).zone_loaded(ZONE_TEXT)) for k in knots)

    dnskeys = {}
    for knot, zsk in zip(knots, zsks, strict=True):
        dnskey = served(knot, "DNSKEY")
        # exactly the combined set, with the owner's signature only
        assert dnskey.keys == combined
        assert dnskey.signer_tags == {owner.tag}
        assert validates(dnskey, dnskey.rrset)
        dnskeys[knot.name] = dnskey.rrset
        # its own data is signed by its own ZSK, which validates under the combined set
        soa = served(knot, "SOA")
        assert soa.signer_tags == {zsk.key_tag}
        assert validates(soa, dnskey.rrset)
        www = served(knot, "A", f"www.{ZONE_TEXT}")
        assert validates(www, dnskey.rrset)
        # CDS/CDNSKEY come from the SKR (TTL 0), signed by the owner KSK
        cds, cdnskey = served(knot, "CDS"), served(knot, "CDNSKEY")
        assert {rd.key_tag for rd in cds.rrset} == {owner.tag}  # type: ignore[attr-defined]
        assert cds.rrset.ttl == 0 and cdnskey.rrset.ttl == 0
        assert cds.signer_tags == cdnskey.signer_tags == {owner.tag}
        assert validates(cds, dnskey.rrset) and validates(cdnskey, dnskey.rrset)
    # RFC 8901 invariant: each provider's signatures validate under the other's DNSKEY set
    assert validates(served(k0, "SOA"), dnskeys["k1"])
    assert validates(served(k1, "SOA"), dnskeys["k0"])

    # the imported records read back (keymgr show-offline) as the blocks sent
    offline = run(provider(k0).offline_records(ZONE_TEXT, blocks[0].timestamp))
    assert [b.keys for b in offline] == [b.keys for b in blocks]

    # re-import on a loaded zone (zone-keys-load path), by stdin this time
    started = time.monotonic()
    run(provider(k1, skr_transfer="stdin").serve_signed_keyset(ZONE_TEXT, keyset(blocks)))
    reimport = time.monotonic() - started
    assert served(k1, "DNSKEY").keys == combined
    print(
        f"\nimport_skr: first (zone-reload) {first_import / 2 * 1000:.0f} ms per provider, "
        f"again (zone-keys-load, stdin) {reimport * 1000:.0f} ms"
    )


def test_skr_without_a_providers_zsk_is_refused(
    knots: tuple[KnotInstance, KnotInstance], owner: OwnerKsk
) -> None:
    k0, k1 = knots
    p0, p1 = provider(k0), provider(k1)
    zsk0, zsk1 = own_zsk(p0), own_zsk(p1)
    ksr0 = run(p0.key_signing_request(ZONE_TEXT))
    blocks = combined_skr([ksr0], [owner])  # forgot k1's KSR
    problems = lacking_keys(keyset(blocks).blocks, {zsk0, zsk1})
    assert len(problems) == len(blocks)
    assert all(str(zsk1.key_tag) in p and zsk1.short() in p for p in problems)
    assert lacking_keys(keyset(blocks).blocks, {zsk0}) == []
    # Knot itself would import it (and go bogus); the adapter refuses, changing nothing.
    with pytest.raises(Refused) as err:
        run(p1.serve_signed_keyset(ZONE_TEXT, keyset(blocks)))
    assert str(zsk1.key_tag) in str(err.value)
    assert run(p1.offline_records(ZONE_TEXT, "-1d")) == []
    assert not run(p1.zone_loaded(ZONE_TEXT))


def test_corrupt_skr_is_rejected_and_nothing_imported(
    knots: tuple[KnotInstance, KnotInstance], owner: OwnerKsk
) -> None:
    k0, _ = knots
    p0 = provider(k0)
    good = combined_skr([run(p0.key_signing_request(ZONE_TEXT))], [owner])
    text = skr_text(good)
    # A corrupt signature in the *last* block: import-skr alone would import the blocks
    # before it and then fail (it is not atomic); validate-skr prints an error but exits 0.
    last = good[-1].dnskey_sigs[0]
    sig = bytearray(last.signature)
    sig[5] ^= 0xFF
    bad_rdata = last.replace(signature=bytes(sig))
    bad_sigs = good[-1].dnskey_sigs.copy()
    bad_sigs.clear()
    bad_sigs.add(bad_rdata)
    bad = [*good[:-1], dataclasses.replace(good[-1], dnskey_sigs=bad_sigs)]
    with pytest.raises(ProviderError) as err:
        run(p0.serve_signed_keyset(ZONE_TEXT, keyset(bad)))
    assert "validate-skr" in str(err.value) and "no valid signature" in str(err.value)
    assert run(p0.offline_records(ZONE_TEXT, "-1d")) == []

    # Missing trailer: Knot rejects it ("malformed data"); the adapter says so first.
    truncated = text[: text.rindex(";; SignedKeyResponse 1.0 generated")]
    skr_file = k0.dir / "truncated.skr"
    skr_file.write_text(truncated)
    with pytest.raises(LabError, match="malformed data"):
        k0.keymgr(ZONE_TEXT, "validate-skr", str(skr_file))
    with pytest.raises(ProviderError, match="must end with a line starting"):
        run(p0.import_skr(ZONE_TEXT, truncated))
    assert run(p0.offline_records(ZONE_TEXT, "-1d")) == []

    # the good one still imports
    run(p0.import_skr(ZONE_TEXT, text))
    assert len(parse_skr(text)) == len(run(p0.offline_records(ZONE_TEXT, good[0].timestamp)))


# ------------------------------------------------------------------------ failures


def test_keymgr_failure_is_provider_error_with_stderr(tmp_path: Path) -> None:
    p = provider_for_config(tmp_path / "missing.conf")
    with pytest.raises(ProviderError) as err:
        run(p.key_signing_request(ZONE_TEXT))
    assert not isinstance(err.value, ProviderUnreachable)
    text = str(err.value)
    assert "keymgr example.test. generate-ksr" in text
    assert "failed opening configuration file" in text  # keymgr's stderr
    with pytest.raises(ProviderError, match=r"missing\.conf"):
        run(p.read_zone(ZONE_TEXT))


def provider_for_config(conf: Path, **overrides: object) -> KnotProvider:
    from providers.knot.adapter import KnotProviderConfig

    return KnotProvider(
        KnotProviderConfig.model_validate(
            {"name": "kx", "knot_config": conf, "nameservers": ["127.0.0.1:53"], **overrides}
        )
    )


def test_command_timeout_is_unreachable(knots: tuple[KnotInstance, KnotInstance]) -> None:
    k0, _ = knots
    # a command 60 s slow against a 0.3 s timeout: without the timeout the call would take
    # 60 s, so a 30 s bound tells the two apart however loaded the host is
    slow = ["sh", "-c", 'sleep 60; exec "$@"', "sh"]
    p = provider(k0, command_prefix=slow, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(ProviderUnreachable, match=r"no answer within 0\.3 s"):
        run(p.key_signing_request(ZONE_TEXT))
    assert time.monotonic() - started < 30
    # the same prefix with time to spare just runs the command
    quick = provider(k0, command_prefix=["sh", "-c", 'exec "$@"', "sh"])
    assert run(quick.key_signing_request(ZONE_TEXT))


def test_missing_tool_and_stopped_server(knots: tuple[KnotInstance, KnotInstance]) -> None:
    k0, _ = knots
    with pytest.raises(ProviderError, match="cannot run 'no-such-wrapper'"):
        run(provider(k0, command_prefix=["no-such-wrapper"]).check_access())
    k0.stop()
    with pytest.raises(ProviderUnreachable, match="control socket"):
        run(provider(k0).check_access())


def test_dnssec_validate_sanity(owner: OwnerKsk) -> None:
    # the owner's own signature over a block validates (guards the helpers themselves)
    from knotkit import skr_block

    block = skr_block(int(time.time()), [owner], [])
    dns.dnssec.validate(block.dnskey, block.dnskey_sigs, {ZONE: block.dnskey})


def test_public_keys_are_read_once_per_key(
    knots: tuple[KnotInstance, KnotInstance], tmp_path: Path
) -> None:
    """A Knot key id is the SHA-1 of its public key, so the adapter runs ``keymgr dnskey``
    once per key: a second read runs none, a new key costs one, a deleted key is
    forgotten -- and the keys read are still exactly what keymgr prints."""
    import os
    import stat

    k0, _ = knots
    log = tmp_path / "commands.log"
    wrapper = tmp_path / "logging-prefix"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    assert os.access(wrapper, os.X_OK)
    p = provider(k0, command_prefix=[str(wrapper)])

    def dnskey_runs() -> int:
        lines = log.read_text().splitlines() if log.exists() else []
        log.write_text("")
        return sum(" dnskey " in line for line in lines)

    first = run(p.read_keys(ZONE_TEXT))
    assert dnskey_runs() == len(first.own_keys) >= 1
    assert run(p.read_keys(ZONE_TEXT)) == first and dnskey_runs() == 0
    new = run(p.create_key(ZONE_TEXT, "zsk", "ecdsap256sha256", active=False,
                           published=False))
    dnskey_runs()
    both = run(p.read_keys(ZONE_TEXT))
    assert {k.key for k in both.own_keys} == {k.key for k in first.own_keys} | {new.key}
    assert dnskey_runs() == 0  # create_key read the new key's DNSKEY already
    for k in both.own_keys:
        assert k.key == Key.parse(
            k0.keymgr(ZONE_TEXT, "dnskey", f"id={k.key_id}").split(None, 2)[2])
    run(p.delete_key(ZONE_TEXT, new.key_id or ""))
    assert run(p.read_keys(ZONE_TEXT)) == first
    assert new.key_id not in p._public[ZONE_TEXT]
