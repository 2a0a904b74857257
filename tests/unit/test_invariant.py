"""decide.invariant.check_zone against real, dnspython-signed data (docs/design-notes.md,
"The invariant").

Three simulated Model 2 signers p0, p1, p2 (fixture ``providers3``), each with its own
KSK + ZSK; each signs its DNSKEY RRset with its own KSK and its SOA with its own ZSK.
"""

from __future__ import annotations

from datetime import timedelta

import dns.dnssec
import dns.rdata
from signing import (
    EXPIRED,
    NOW,
    ZONE,
    SimProvider,
    cached,
    dnskey_rrset,
    ds_rrset,
    ds_texts,
    make_key,
    make_provider,
    model2_keys,
    parent_view,
    rrset_of,
    server_view,
    signed,
    synced_servers,
)

from core.keys import Digest
from core.observation import ParentView, ServerView, ZoneView
from orchestrator.decide.invariant import Finding, breaches, check_zone


def view_of(
    servers: list[ServerView],
    parent: tuple[ParentView, ...] | None = None,
    providers: list[SimProvider] | None = None,
    **kw: object,
) -> ZoneView:
    if parent is None:
        assert providers is not None
        parent = (parent_view(ds_texts(p.ksk for p in providers)),)
    return ZoneView(zone=ZONE, servers=tuple(servers), parent=parent, **kw)  # type: ignore[arg-type]


def codes(findings: list[Finding]) -> list[str]:
    return sorted(f.code for f in findings)


def only(findings: list[Finding], code: str) -> Finding:
    hits = [f for f in findings if f.code == code]
    assert len(hits) == 1, findings
    return hits[0]


# --- (a) the steady state ------------------------------------------------------------------


def test_fully_synced_model2_has_no_finding(providers3: list[SimProvider]) -> None:
    view = view_of(synced_servers(providers3), providers=providers3)
    assert check_zone(view, NOW) == []
    assert check_zone(view, NOW, expect_identical=False) == []


def test_synced_with_several_servers_per_provider(providers3: list[SimProvider]) -> None:
    servers = synced_servers(providers3)
    p0 = providers3[0]
    servers.append(server_view(p0, dnskeys=model2_keys(p0, providers3),
                               cds_keys=[p.ksk for p in providers3], server="198.51.100.1:53"))
    assert check_zone(view_of(servers, providers=providers3), NOW) == []


# --- (b) a provider lacks another's ZSK ----------------------------------------------------


def test_provider_missing_anothers_zsk_is_a_breach(providers3: list[SimProvider]) -> None:
    p0, p1, _ = providers3
    servers = synced_servers(providers3)
    servers[1] = server_view(
        p1, dnskeys=[k for k in model2_keys(p1, providers3) if k is not p0.zsk],
        cds_keys=[p.ksk for p in providers3],
    )
    findings = check_zone(view_of(servers, providers=providers3), NOW)
    found = only(breaches(findings), "ZSK_MISSING")
    assert len(breaches(findings)) == 1
    assert found.severity == "breach"
    assert found.provider == "p0"  # p0's signatures fail ...
    assert found.server == p0.server
    assert found.key_tag == p0.zsk.tag
    assert found.record == "DNSKEY"
    assert str(p0.zsk.tag) in found.message
    assert f"served by {p1.label}" in found.message  # ... under p1's DNSKEY RRset
    # the differing sets are also reported as a (non-breaking) warning
    assert codes(findings) == ["DNSKEY_SETS_DIFFER", "ZSK_MISSING"]


# --- (c) a cached DNSKEY RRset -------------------------------------------------------------


def test_cached_dnskey_set_missing_a_zsk_is_a_breach(providers3: list[SimProvider]) -> None:
    p0, _, p2 = providers3
    servers = synced_servers(providers3)
    old = dnskey_rrset([k for k in model2_keys(p0, providers3) if k is not p2.zsk])
    view = view_of(servers, providers=providers3,
                   cached_dnskeys=(cached(old, source="p0", server=p0.server),))
    findings = check_zone(view, NOW)
    assert codes(findings) == ["ZSK_MISSING"]
    found = findings[0]
    assert (found.severity, found.provider, found.key_tag) == ("breach", "p2", p2.zsk.tag)
    assert "cached from p0" in found.message
    assert (NOW + timedelta(minutes=50)).isoformat(timespec="seconds") in found.message


def test_cached_set_identical_to_a_served_one_adds_nothing(
    providers3: list[SimProvider],
) -> None:
    servers = synced_servers(providers3)
    same = servers[0].dnskey.rrset  # type: ignore[union-attr]
    view = view_of(servers, providers=providers3,
                   cached_dnskeys=(cached(same, source="p0", server=providers3[0].server),))
    assert check_zone(view, NOW) == []


# --- (d) the parent's DS --------------------------------------------------------------------


def test_parent_ds_lacking_a_ksk_is_ds_mismatch(providers3: list[SimProvider]) -> None:
    p0, p1, p2 = providers3
    parent = (parent_view(ds_texts([p0.ksk, p2.ksk])),)
    findings = check_zone(view_of(synced_servers(providers3), parent), NOW)
    found = only(breaches(findings), "DS_MISMATCH")
    assert len(breaches(findings)) == 1
    assert (found.provider, found.server, found.record) == ("p1", p1.server, "DS")
    assert f"signed by {p1.ksk.tag}" in found.message
    assert "served by the parent (192.0.2.100:53)" in found.message
    # CDS (all three) and DS (two) differ: also reported as a warning
    assert codes(findings) == ["DS_MISMATCH", "PARENT_NOT_FOLLOWING"]


def test_cached_ds_set_lacking_a_ksk_is_ds_mismatch(providers3: list[SimProvider]) -> None:
    p0, _, p2 = providers3
    old_ds = ds_rrset(ds_texts([p0.ksk, p2.ksk]))
    view = view_of(synced_servers(providers3), providers=providers3,
                   cached_ds=(cached(old_ds, source="parent", server="192.0.2.100:53",
                                     age=timedelta(hours=1)),))
    findings = check_zone(view, NOW)
    assert codes(findings) == ["DS_MISMATCH"]
    found = findings[0]
    assert (found.severity, found.provider) == ("breach", "p1")
    assert "cached from the parent (192.0.2.100:53) until" in found.message


def test_parent_ds_by_another_digest_type_still_matches(providers3: list[SimProvider]) -> None:
    parent = (parent_view(ds_texts((p.ksk for p in providers3), digest_type=4)),)
    findings = check_zone(view_of(synced_servers(providers3), parent), NOW)
    assert breaches(findings) == []


def test_parent_without_ds_is_a_warning(providers3: list[SimProvider]) -> None:
    findings = check_zone(view_of(synced_servers(providers3), (parent_view([]),)), NOW)
    assert breaches(findings) == []
    assert "NO_DS" in codes(findings)
    assert only(findings, "NO_DS").severity == "warning"


def test_no_parent_observed_skips_ds_checks(providers3: list[SimProvider]) -> None:
    assert check_zone(view_of(synced_servers(providers3), ()), NOW) == []


# --- (e) algorithms -------------------------------------------------------------------------


def test_different_algorithms_are_a_breach() -> None:
    providers = [make_provider(0), make_provider(1), make_provider(2, algorithm=15)]
    findings = check_zone(view_of(synced_servers(providers), providers=providers), NOW)
    assert codes(findings) == ["ALGORITHM_MISMATCH"]
    found = findings[0]
    assert found.severity == "breach"
    assert "p0: ECDSAP256SHA256" in found.message
    assert "p2: ED25519" in found.message
    assert "RFC 8901 sec. 4" in found.message


# --- (f) CDS safety -------------------------------------------------------------------------


def test_cds_omitting_a_ksk_is_unsafe(providers3: list[SimProvider]) -> None:
    p0, p1, p2 = providers3
    servers = synced_servers(providers3)
    servers[0] = server_view(p0, dnskeys=model2_keys(p0, providers3), cds_keys=[p0.ksk, p2.ksk])
    findings = check_zone(view_of(servers, providers=providers3), NOW)
    found = only(breaches(findings), "CDS_UNSAFE")
    assert len(breaches(findings)) == 1
    assert (found.provider, found.server, found.record) == ("p0", p0.server, "CDS")
    assert f"the DNSKEY RRset of {p1.label}" in found.message
    assert codes(findings) == ["CDS_INCONSISTENT", "CDS_UNSAFE"]


def test_cds_delete_is_not_judged_unsafe(providers3: list[SimProvider]) -> None:
    servers = synced_servers(providers3)
    p0 = providers3[0]
    delete = rrset_of("CDS", ["0 0 0 00"])
    servers[0] = ServerView(provider=p0.name, server=p0.server, at=NOW,
                            dnskey=servers[0].dnskey, soa=servers[0].soa, nsec3=False,
                            cds=signed(delete, [p0.zsk]))
    findings = check_zone(view_of(servers, providers=providers3), NOW)
    assert "CDS_UNSAFE" not in codes(findings)
    assert codes(findings) == ["CDS_INCONSISTENT"]


def test_cds_by_other_digest_type_is_only_inconsistent(providers3: list[SimProvider]) -> None:
    p2 = providers3[2]
    servers = synced_servers(providers3)
    servers[2] = server_view(p2, dnskeys=model2_keys(p2, providers3),
                             cds_keys=[p.ksk for p in providers3], cds_digest_type=4)
    findings = check_zone(view_of(servers, providers=providers3), NOW)
    assert codes(findings) == ["CDS_INCONSISTENT"]
    assert only(findings, "CDS_INCONSISTENT").severity == "warning"


# --- (g) unreachable server -----------------------------------------------------------------


def test_unreachable_server_is_unobservable(providers3: list[SimProvider]) -> None:
    p2 = providers3[2]
    servers = synced_servers(providers3)
    servers[2] = ServerView(provider="p2", server=p2.server, at=NOW, error="timed out after 3s")
    findings = check_zone(view_of(servers, providers=providers3), NOW)
    assert codes(findings) == ["UNOBSERVABLE"]
    found = findings[0]
    assert (found.severity, found.provider, found.server) == ("breach", "p2", p2.server)
    assert found.message == f"{p2.label}: timed out after 3s"


def test_server_without_dnskey_is_unsigned(providers3: list[SimProvider]) -> None:
    p2 = providers3[2]
    servers = synced_servers(providers3)
    servers[2] = ServerView(provider="p2", server=p2.server, at=NOW, soa=servers[2].soa,
                            cds=servers[2].cds, nsec3=False)
    findings = check_zone(view_of(servers, providers=providers3), NOW)
    unsigned = [f for f in findings if f.code == "UNSIGNED"]
    assert [(f.severity, f.provider) for f in unsigned] == [("breach", "p2")]
    assert "serves no DNSKEY RRset" in unsigned[0].message


def _unsigned_soa_view(providers3: list[SimProvider]) -> ZoneView:
    p1 = providers3[1]
    servers = synced_servers(providers3)
    servers[1] = server_view(p1, dnskeys=model2_keys(p1, providers3),
                             cds_keys=[p.ksk for p in providers3], soa_signers=[])
    return view_of(servers, providers=providers3)


def test_soa_without_rrsig_is_unsigned(providers3: list[SimProvider]) -> None:
    findings = check_zone(_unsigned_soa_view(providers3), NOW)
    found = only(findings, "UNSIGNED")
    assert (found.severity, found.provider) == ("breach", "p1")
    assert found.message == f"{providers3[1].label} serves the SOA without RRSIG"


def test_unsigned_soa_is_not_also_an_algorithm_mismatch(providers3: list[SimProvider]) -> None:
    assert codes(check_zone(_unsigned_soa_view(providers3), NOW)) == ["UNSIGNED"]


# --- (h) DNSKEY RRset signed by a key outside it --------------------------------------------


def test_dnskey_set_signed_by_foreign_key_is_not_validatable(
    providers3: list[SimProvider],
) -> None:
    p1 = providers3[1]
    rogue = make_key(ksk=True)
    servers = synced_servers(providers3)
    servers[1] = server_view(p1, dnskeys=model2_keys(p1, providers3),
                             cds_keys=[p.ksk for p in providers3], dnskey_signers=[rogue])
    findings = check_zone(view_of(servers, providers=providers3), NOW)
    found = only(findings, "DNSKEY_NOT_VALIDATABLE")
    assert (found.severity, found.provider, found.server) == ("breach", "p1", p1.server)
    assert f"signed by {rogue.tag}" in found.message
    # no DS-matching key signs it either (current DS and the published CDS)
    assert codes(findings) == ["CDS_UNSAFE", "CDS_UNSAFE", "CDS_UNSAFE", "DNSKEY_NOT_VALIDATABLE",
                               "DS_MISMATCH"]
    assert {f.provider for f in findings if f.code == "DS_MISMATCH"} == {"p1"}


# --- (i) expired signature ------------------------------------------------------------------


def test_expired_soa_signature_is_signature_invalid(providers3: list[SimProvider]) -> None:
    p1 = providers3[1]
    servers = synced_servers(providers3)
    servers[1] = server_view(p1, dnskeys=model2_keys(p1, providers3),
                             cds_keys=[p.ksk for p in providers3], soa_window=EXPIRED)
    findings = check_zone(view_of(servers, providers=providers3), NOW)
    assert codes(findings) == ["SIGNATURE_INVALID"]
    found = findings[0]
    assert (found.severity, found.provider, found.record) == ("breach", "p1", "SOA")
    assert f"SOA signatures by {p1.zsk.tag}" in found.message
    assert "expired" in found.message


def test_signatures_checked_at_the_given_time(providers3: list[SimProvider]) -> None:
    view = view_of(synced_servers(providers3), providers=providers3)
    later = NOW + timedelta(days=15)  # after every RRSIG's expiration
    found = codes(check_zone(view, later))
    assert "DNSKEY_NOT_VALIDATABLE" in found
    assert "SIGNATURE_INVALID" in found


# --- (j) ZSK-only import ----------------------------------------------------------------------


def test_zsk_only_import_is_valid_and_warns_only_when_identity_expected(
    providers3: list[SimProvider],
) -> None:
    view = view_of(synced_servers(providers3, import_ksks=False), providers=providers3)
    assert check_zone(view, NOW, expect_identical=False) == []
    findings = check_zone(view, NOW, expect_identical=True)
    assert codes(findings) == ["DNSKEY_SETS_DIFFER"]
    assert findings[0].severity == "warning"
    for p in providers3:
        assert p.label in findings[0].message


# --- (k) parent not following -------------------------------------------------------------------


def test_parent_ds_differing_from_cds_warns(providers3: list[SimProvider]) -> None:
    stale = make_key(ksk=True)  # an old KSK whose DS the parent still holds
    parent = (parent_view(ds_texts([*(p.ksk for p in providers3), stale])),)
    findings = check_zone(view_of(synced_servers(providers3), parent), NOW)
    assert codes(findings) == ["PARENT_NOT_FOLLOWING"]
    found = findings[0]
    assert found.severity == "warning"
    assert str(stale.tag) in found.message


def test_parent_with_extra_digest_type_for_same_keys_follows(
    providers3: list[SimProvider],
) -> None:
    ksks = [p.ksk for p in providers3]
    parent = (parent_view(ds_texts(ksks) + ds_texts(ksks, digest_type=4)),)
    assert check_zone(view_of(synced_servers(providers3), parent), NOW) == []


# --- (l) NSEC vs NSEC3 ----------------------------------------------------------------------------


def test_nsec_and_nsec3_mixed_warns(providers3: list[SimProvider]) -> None:
    p2 = providers3[2]
    servers = synced_servers(providers3)
    servers[2] = server_view(p2, dnskeys=model2_keys(p2, providers3),
                             cds_keys=[p.ksk for p in providers3], nsec3=True)
    findings = check_zone(view_of(servers, providers=providers3), NOW)
    assert codes(findings) == ["DENIAL_MIXED"]
    assert findings[0].severity == "warning"
    assert "RFC 8901 sec. 5" in findings[0].message


# --- Finding helpers ----------------------------------------------------------------------------


def test_finding_as_json_drops_unset_fields() -> None:
    f = Finding("breach", "ZSK_MISSING", "m", provider="p0", key_tag=1)
    assert f.as_json() == {"severity": "breach", "code": "ZSK_MISSING", "message": "m",
                           "provider": "p0", "key_tag": 1}
    w = Finding("warning", "NO_DS", "x")
    assert breaches([f, w]) == [f]


def test_sha1_parent_ds_rdata_is_readable() -> None:
    # Guard for the SHA-1 bug below: the DS set itself is well-formed.
    assert dns.rdata.from_text("IN", "DS", f"1 13 1 {'AB' * 20}").digest_type == 1


def test_parent_with_sha1_ds_is_checked(providers3: list[SimProvider]) -> None:
    # p1's DS at the parent is still the SHA-1 one. RFC 8624 sec. 3.3: validators MUST
    # accept SHA-1 DS, so the chain to p1 holds and there is no breach.
    p0, p1, p2 = providers3
    sha1 = Digest.from_rdata(dns.dnssec.make_ds(ZONE, p1.ksk.dnskey, "SHA1", validating=True))
    parent = (parent_view([*ds_texts([p0.ksk, p2.ksk]), sha1.text]),)
    assert breaches(check_zone(view_of(synced_servers(providers3), parent), NOW)) == []
