"""The Model 1 lab: PowerDNS parent, Knot DNS providers in offline-KSK mode, the owner KSK
in a SoftHSM2 token (or key files), the parent agent (CDS/CSYNC scans) and Unbound.

The end-to-end test plays the zone owner by hand, as ``tests/knot/knotkit.py`` does but
signing with the lab's PKCS#11 store: one SKR with the combined DNSKEY RRset (owner KSK +
every Knot's ZSK) goes to every Knot, after which the zone validates from the parent's
trust anchor down.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pkcs11
import pytest
from prereq import needs

from core.config import KnotProviderConfig, load_config
from core.keys import Key
from core.keyset import SignedKeyBlock, SignedKeySet, SignedRRset
from multisigner_lab import Lab, LabError
from multisigner_lab.cli import format_info, lab_down, lab_info, lab_up
from multisigner_lab.dnsq import answer, query
from multisigner_lab.model1 import Model1Lab
from multisigner_lab.zones import ds_text
from providers.knot.adapter import KnotProvider
from providers.kskstore import KskStore, StoredKey, make_store, sign_rrset

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
ZONE = "example.test."
ORIGIN = dns.name.from_text(ZONE)
BACKDATE = timedelta(hours=1, minutes=30)  # keymgr sign-ksr's RRSIG inception

pytestmark = [
    pytest.mark.lab,
    needs("pdns_server", "unbound", "knotd", "keymgr", "knotc",
          what="Debian packages pdns-server, unbound, knot"),
]
NEEDS_SOFTHSM = needs("softhsm2-util", files=[MODULE], what="Debian package softhsm2")


@pytest.fixture
def pkcs11_env() -> Iterator[None]:
    """Put SOFTHSM2_CONF (and the module's configuration) back as they were: opening the
    lab's store in this process points both at the lab's token, and other tests of this
    worker (tests/kskstore) use their own."""
    before = os.environ.get("SOFTHSM2_CONF")
    yield
    if before is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = before
    if MODULE in pkcs11._loaded:
        pkcs11.lib(MODULE).reinitialize()


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)


def lab_processes(directory: Path) -> list[str]:
    """Command lines of running processes that name the lab directory (every server is
    started with a path in it: knotd -c, pdns_server --config-dir, unbound -c, the parent
    agent --config)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if str(directory) in cmdline and state not in ("Z", "X"):
            found.append(cmdline.strip())
    return found


# ----------------------------------------------------------------- the zone owner, by hand


async def knot_zsks(providers: list[KnotProvider]) -> list[Key]:
    """Every Knot's ZSK(s) to publish now: its KSR's first block, which must agree with
    what ``read_zone`` reports as published (Knot holds ZSKs only)."""
    ksrs = await asyncio.gather(*(p.key_signing_request(ZONE, "+0", "+1d") for p in providers))
    states = await asyncio.gather(*(p.read_zone(ZONE) for p in providers))
    zsks: list[Key] = []
    for provider, ksr, state in zip(providers, ksrs, states, strict=True):
        requested = set(ksr[0].keys)
        published = {k.key for k in state.own_keys if k.published}
        assert requested == published, provider.name
        assert requested and all(k.flags == 256 for k in requested), provider.name
        zsks += sorted(requested, key=lambda k: k.text)
    return zsks


def owner_skr(store: KskStore, ksk: StoredKey, zsks: list[Key], ttl: int) -> SignedKeySet:
    """One signed key block stamped a second ago: DNSKEY = owner KSK + ``zsks`` (TTL ``ttl``),
    CDNSKEY/CDS for the owner KSK (TTL 0, as Knot writes them), all signed by the owner KSK
    on the token with inception 1.5 h back."""
    now = datetime.now(UTC).replace(microsecond=0)
    inception, expiration = now - BACKDATE, now + timedelta(days=1)
    dnskey = dns.rrset.RRset(ORIGIN, dns.rdataclass.IN, dns.rdatatype.DNSKEY)
    dnskey.update_ttl(ttl)
    for key in [ksk.dnskey, *zsks]:
        dnskey.add(key.rdata)
    cdnskey = dns.rrset.RRset(ORIGIN, dns.rdataclass.IN, dns.rdatatype.CDNSKEY)
    cdnskey.add(dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.CDNSKEY, ksk.dnskey.text), 0)
    cds = dns.rrset.RRset(ORIGIN, dns.rdataclass.IN, dns.rdatatype.CDS)
    cds.add(dns.dnssec.make_cds(ORIGIN, ksk.dnskey.rdata, "SHA256"), 0)

    def signed(rrset: dns.rrset.RRset) -> SignedRRset:
        return SignedRRset(rrset, sign_rrset(rrset, store, ksk.key_id, ORIGIN, inception,
                                             expiration))

    stamp = int(now.timestamp()) - 1
    block = SignedKeyBlock(stamp, signed(dnskey), cds=signed(cds), cdnskey=signed(cdnskey))
    return SignedKeySet(ZONE, (block,))


def served(
    k_address: str, k_port: int, rdtype: str, qname: str = ZONE
) -> tuple[dns.rrset.RRset, dns.rrset.RRset]:
    resp = query(k_address, k_port, qname, rdtype)
    assert resp.rcode() == dns.rcode.NOERROR and resp.flags & dns.flags.AA, resp
    rrset, sigs = answer(resp, qname, rdtype), answer(resp, qname, "RRSIG", covers=rdtype)
    assert rrset is not None and sigs is not None, resp
    return rrset, sigs


def resolves_with_ad(lab: Model1Lab, qname: str) -> bool:
    address, port = lab.resolver
    q = dns.message.make_query(qname, "A", want_dnssec=True)
    resp = dns.query.udp(q, address, port=port, timeout=3)
    return resp.rcode() == dns.rcode.NOERROR and bool(resp.flags & dns.flags.AD)


# ---------------------------------------------------------------------------- the tests


@NEEDS_SOFTHSM
def test_pkcs11_lab_end_to_end(tmp_path: Path, pkcs11_env: None) -> None:
    directory = tmp_path / "lab"
    started = time.monotonic()
    lab = Model1Lab.start(directory, providers=2)
    took = time.monotonic() - started
    try:
        # Model1Lab.start waits for every server to answer (an event, not a delay); this
        # bound only catches a hang, not a host loaded by other workers
        assert took < 120, f"the lab took {took:.1f} s to start"
        assert sorted(lab.alive()) == ["k0", "k1", "parent", "parent-agent", "unbound"]
        assert stat.S_IMODE(lab.config_path.stat().st_mode) == 0o600

        # ---- the config: two Knot providers, one model 1 zone with the pkcs11 store
        config = load_config(lab.config_path)
        zone = config.zone(ZONE)
        assert zone.model == 1 and zone.signers == ["k0", "k1"]
        assert zone.parent.type == "cds-scan"
        assert [str(ns) for ns in zone.parent.nameservers] == [lab.parent.nameserver]
        assert zone.policy.signature_validity == timedelta(seconds=60)
        assert zone.policy.signature_refresh == timedelta(seconds=30)
        assert zone.policy.propagation_delay == timedelta(0)
        owner = zone.owner_ksk
        assert owner is not None and owner.store == "pkcs11" and owner.token_label == "multisigner"
        assert owner.module_env == {"SOFTHSM2_CONF": str(directory / "softhsm" / "softhsm2.conf")}
        knots = [config.provider(name) for name in zone.signers]
        assert all(isinstance(p, KnotProviderConfig) for p in knots)
        for p, k in zip(knots, lab.providers, strict=True):
            assert isinstance(p, KnotProviderConfig)
            assert p.knot_config == k.conf_path and p.ns_names == [k.ns_name]
            assert [str(ns) for ns in p.nameservers] == [k.nameserver]

        # ---- the parent delegates to both Knots with the owner KSK's DS
        assert lab.parent_ns(ZONE) == ["ns1.k0.test.", "ns1.k1.test."]
        assert lab.delegated(ZONE) == ["k0", "k1"]
        with make_store(owner) as store:
            (ksk,) = store.list_keys()
            assert (ksk.key_id, ksk.dnskey.text) == lab.owner_ksk(ZONE)
            assert ksk.dnskey.flags == 257 and ksk.dnskey.algorithm == 13
            assert lab.parent_ds(ZONE) == [ds_text(ZONE, ksk.dnskey.text)]

            # ---- before the first SKR the zone is not loaded: Knot answers SERVFAIL
            for k in lab.providers:
                for rdtype in ("SOA", "DNSKEY", "CDS"):
                    resp = query(k.address, k.dns_port, ZONE, rdtype)
                    assert resp.rcode() == dns.rcode.SERVFAIL, (k.name, rdtype)
                    assert not resp.flags & dns.flags.AA and not resp.answer
            # ... which the parent agent records (once) and does nothing about
            wait_for(lambda: any("SERVFAIL" in json.dumps(h) and h["to_state"] == "refused"
                                 for h in lab.parent_history("scan-cds")), 5, "agent refusal")

            # ---- the owner signs the combined DNSKEY RRset; both Knots import it
            providers = [KnotProvider(p) for p in knots if isinstance(p, KnotProviderConfig)]

            async def exchange() -> list[Key]:
                try:
                    zsks = await knot_zsks(providers)
                    skr = owner_skr(store, ksk, zsks, lab.ttl)
                    await asyncio.gather(*(p.serve_signed_keyset(ZONE, skr) for p in providers))
                    assert all(await asyncio.gather(*(p.zone_loaded(ZONE) for p in providers)))
                    return zsks
                finally:
                    await asyncio.gather(*(p.aclose() for p in providers))

            zsks = asyncio.run(exchange())
        assert len(zsks) == 2 and len({z.key_tag for z in zsks}) == 2  # one ZSK per Knot

        # ---- both serve the combined set, signed by the owner KSK; data by their ZSK
        combined = {ksk.dnskey, *zsks}
        for k in lab.providers:
            keys, sigs = served(k.address, k.dns_port, "DNSKEY")
            assert {Key.from_rdata(rd) for rd in keys} == combined, k.name
            assert keys.ttl == lab.ttl
            assert {s.key_tag for s in sigs} == {ksk.key_tag}, k.name
            dns.dnssec.validate(keys, sigs, {ORIGIN: keys})
            cds, cds_sigs = served(k.address, k.dns_port, "CDS")
            assert [rd.to_text() for rd in cds] == [
                dns.dnssec.make_cds(ORIGIN, ksk.dnskey.rdata, "SHA256").to_text()
            ]
            assert cds.ttl == 0  # from the SKR, as Knot's own sign-ksr writes it
            dns.dnssec.validate(cds, cds_sigs, {ORIGIN: keys})
            soa, soa_sigs = served(k.address, k.dns_port, "SOA")
            signer_tags = {s.key_tag for s in soa_sigs}
            assert len(signer_tags) == 1 and signer_tags < {z.key_tag for z in zsks}
            dns.dnssec.validate(soa, soa_sigs, {ORIGIN: keys})
        # each Knot signs with its own ZSK
        tags = [{s.key_tag for s in served(k.address, k.dns_port, "SOA")[1]} for k in lab.providers]
        assert tags[0] != tags[1]

        # ---- validated end to end from the parent's trust anchor
        wait_for(lambda: resolves_with_ad(lab, f"www.{ZONE}"), 15, f"www.{ZONE} A with AD")

        # ---- the parent agent: CDS (TTL 0) = the DS already there, so no change
        time.sleep(1.5)  # a few scan rounds
        assert lab.parent_ds(ZONE) == [ds_text(ZONE, ksk.dnskey.text)]
        assert not [h for h in lab.parent_history("scan-cds", "scan-csync")
                    if h["to_state"] == "accepted"]
        assert lab.parent_ns(ZONE) == ["ns1.k0.test.", "ns1.k1.test."]

        # ---- the lab as lab.json describes it (another process, `lab info`)
        again = Model1Lab.load(directory)
        assert [k.nameserver for k in again.providers] == [k.nameserver for k in lab.providers]
        assert again.dnsviz_probe_args(ZONE)[:2] == ["probe", "-A"]
        assert f"{ZONE[:-1]}:" + ",".join(lab.parent_ds(ZONE)) in again.dnsviz_probe_args(ZONE)
        info = lab_info(directory)
        assert info["model"] == 1 and info["running"]
        assert [p["name"] for p in info["providers"]] == ["k0", "k1"]
        assert owner.pin is not None
        assert owner.pin.get_secret_value() not in json.dumps(info)
        assert owner.pin.get_secret_value() not in lab.state_path.read_text()
        assert "knot -c" in format_info(info)
        with pytest.raises(LabError, match="already runs"):
            Model1Lab.start(directory)
        with pytest.raises(LabError, match="not a Model 1 lab"):
            _load_model2_as_model1(tmp_path)
    finally:
        lab.stop()
    assert lab.alive() == []
    assert lab_processes(directory) == []
    assert lab_info(directory)["running"] is False


def _load_model2_as_model1(tmp_path: Path) -> None:
    """A lab.json without ``"model": 1`` is not loaded as a Model 1 lab."""
    other = tmp_path / "model2"
    other.mkdir()
    (other / "lab.json").write_text(json.dumps({"running": False, "processes": []}))
    Model1Lab.load(other)


def test_file_store_lab(tmp_path: Path) -> None:
    directory = tmp_path / "lab"
    with Model1Lab.start(directory, providers=2, store="file", unbound=False) as lab:
        assert sorted(lab.alive()) == ["k0", "k1", "parent", "parent-agent"]
        zone = load_config(lab.config_path).zone(ZONE)
        assert zone.owner_ksk is not None and zone.owner_ksk.store == "file"
        keys = zone.owner_ksk.directory
        assert keys is not None and keys.parent == directory / "owner-ksk"
        assert stat.S_IMODE(keys.stat().st_mode) == 0o700
        (pem,) = keys.iterdir()
        assert pem.suffix == ".pem" and stat.S_IMODE(pem.stat().st_mode) == 0o600
        with make_store(zone.owner_ksk) as store:
            (ksk,) = store.list_keys()
        assert lab.parent_ds(ZONE) == [ds_text(ZONE, ksk.dnskey.text)]
        assert lab.store == "file" and lab.owner_ksk(ZONE)[1] == ksk.dnskey.text
        with pytest.raises(LabError, match="runs no resolver"):
            _ = lab.resolver
    assert lab.alive() == [] and lab_processes(directory) == []


@NEEDS_SOFTHSM
def test_lab_up_model_1_and_down(tmp_path: Path) -> None:
    """``lab_up(model=1)`` with several zones; ``lab_down`` (``Lab.load().stop()``) stops
    it. Each zone has its own owner KSK on the one token (its own label prefix)."""
    directory = tmp_path / "lab"
    zones = ["a.test.", "b.test."]
    lab = lab_up(directory, providers=1, zones=zones, ttl=3, model=1)
    try:
        assert isinstance(lab, Model1Lab) and lab.zones == zones
        config = load_config(lab.config_path)
        prefixes = [z.owner_ksk.key_label_prefix for z in config.zones if z.owner_ksk]
        assert prefixes == ["ksk-z0", "ksk-z1"]
        ds = {z: lab.parent_ds(z) for z in zones}
        assert all(len(v) == 1 for v in ds.values()) and ds["a.test."] != ds["b.test."]
        for z in zones:
            assert ds[z] == [ds_text(z, lab.owner_ksk(z)[1])]
        assert lab.parent_ns("b.test.") == ["ns1.k0.test."]
        # Lab.load reads the same lab.json: the Model 2 tooling stops a Model 1 lab
        assert sorted(Lab.load(directory).alive()) == ["k0", "parent", "parent-agent", "unbound"]
    finally:
        lab_down(directory)
    assert lab_processes(directory) == []
    with pytest.raises(LabError, match="model must be 1 or 2"):
        lab_up(directory, model=3)


def test_failed_start_stops_what_was_started(tmp_path: Path) -> None:
    """The owner KSK store cannot be made (no such PKCS#11 module) while the parent and
    the Knots start: the error propagates and nothing is left running."""
    directory = tmp_path / "lab"
    with pytest.raises(LabError, match=r"PKCS#11 module /nonexistent/libsofthsm2\.so is missing"):
        Model1Lab.start(directory, pkcs11_module="/nonexistent/libsofthsm2.so")
    assert lab_processes(directory) == []
    assert Model1Lab.load(directory).alive() == []
