"""The PKCS#11 owner-KSK store against a real SoftHSM2 token.

Each test process (pytest-xdist worker or plain pytest) makes its own token directory
and points ``SOFTHSM2_CONF`` at it before SoftHSM2 is first loaded: the module reads
its configuration once per process, at ``C_Initialize`` (if another test loaded it
already, the library is re-initialized, which re-reads the configuration).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dns.dnssec
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.transaction
import dns.zone
import pkcs11
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from dns.rdtypes.ANY.DNSKEY import DNSKEY
from pkcs11 import Attribute, ObjectClass
from prereq import needs, require

from bench.kskstore_bench import signatures_per_second
from providers.kskstore import (
    KeyStoreError,
    OwnerKskConfig,
    make_store,
    sign_rrset,
    sign_rrset_with,
)
from providers.kskstore.pkcs11store import Pkcs11KskStore

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
ZONE = dns.name.from_text("example.test.")
PIN, SO_PIN = "246810", "13579111"

pytestmark = [
    pytest.mark.lab,
    needs("softhsm2-util", files=[MODULE], what="Debian package softhsm2"),
]


@dataclass(frozen=True)
class SoftHsm:
    directory: Path
    token: str  # the token the store tests use
    spare: str  # a token no store keeps open (fresh-login cases)


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    directory = tmp_path_factory.mktemp("softhsm")
    (directory / "tokens").mkdir()
    conf = directory / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {directory / 'tokens'}\nobjectstore.backend = file\n"
        "log.level = ERROR\n"
    )
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    hsm = SoftHsm(directory, token="ms-ksk", spare="ms-spare")
    for label in (hsm.token, hsm.spare):
        subprocess.run(
            [
                "softhsm2-util",
                "--init-token",
                "--free",
                "--label",
                label,
                "--pin",
                PIN,
                "--so-pin",
                SO_PIN,
            ],
            check=True,
            capture_output=True,
            env={**os.environ, "SOFTHSM2_CONF": str(conf)},
        )
    if MODULE in pkcs11._loaded:  # loaded by someone before us: re-read SOFTHSM2_CONF
        pkcs11.lib(MODULE).reinitialize()
    yield hsm
    if previous is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = previous


@pytest.fixture
def store(softhsm: SoftHsm, request: pytest.FixtureRequest) -> Iterator[Pkcs11KskStore]:
    # A label prefix per test keeps tests apart on the shared token.
    prefix = "t-" + request.node.name.replace("_", "-")[:30].strip("-[]")
    with Pkcs11KskStore(
        module=MODULE, token_label=softhsm.token, pin=PIN, key_label_prefix=prefix
    ) as opened:
        yield opened


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def window() -> tuple[datetime, datetime]:
    return now() - timedelta(hours=1), now() + timedelta(days=14)


def zsk() -> tuple[ec.EllipticCurvePrivateKey, DNSKEY]:
    private = ec.generate_private_key(ec.SECP256R1())
    return private, dns.dnssec.make_dnskey(private.public_key(), 13, 256)


def test_generate_on_the_token_non_extractable(softhsm: SoftHsm, store: Pkcs11KskStore) -> None:
    ksk = store.generate()
    assert ksk.key_id.startswith(store.prefix + "-")
    assert ksk.dnskey.flags == 257 and ksk.dnskey.algorithm == 13 and ksk.created is not None
    # Another session of this process shares the store's login and sees the private key.
    token = pkcs11.lib(MODULE).get_token(token_label=softhsm.token)
    with token.open() as session:
        (private,) = session.get_objects(
            {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: ksk.key_id}
        )
        assert private[Attribute.TOKEN] is True
        assert private[Attribute.EXTRACTABLE] is False
        assert private[Attribute.NEVER_EXTRACTABLE] is True
        assert private[Attribute.SENSITIVE] is True
        assert private[Attribute.ALWAYS_SENSITIVE] is True
        with pytest.raises(pkcs11.exceptions.AttributeSensitive):
            private[Attribute.VALUE]
        (public,) = session.get_objects(
            {Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.ID: private[Attribute.ID]}
        )
        assert public[Attribute.LABEL] == ksk.key_id
    with pytest.raises(NotImplementedError):
        store.signer(ksk.key_id).to_pem()


def test_keys_persist_and_are_listed_by_prefix(softhsm: SoftHsm, store: Pkcs11KskStore) -> None:
    first, second = store.generate(), store.generate()
    assert second.key_id == first.key_id + "-2" or second.key_id > first.key_id
    with Pkcs11KskStore(
        module=MODULE, token_label=softhsm.token, pin=PIN, key_label_prefix=store.prefix
    ) as again:
        assert [k.key_id for k in again.list_keys()] == [first.key_id, second.key_id]
        assert again.get(first.key_id).dnskey == first.dnskey
    other = Pkcs11KskStore(
        module=MODULE, token_label=softhsm.token, pin=PIN, key_label_prefix="t-nobody"
    )
    assert other.list_keys() == []
    other.close()
    assert store.list_keys()  # closing one store leaves the other logged in


def test_sign_and_validate_with_dnspython(store: Pkcs11KskStore) -> None:
    ksk = store.generate()
    rrset = dns.rrset.from_rdata_list(ZONE, 3600, [ksk.dnskey.rdata, zsk()[1], zsk()[1]])
    inception, expiration = window()
    rrsigs = sign_rrset(rrset, store, ksk.key_id, ZONE, inception, expiration)
    (rrsig,) = rrsigs
    assert rrsig.key_tag == ksk.key_tag and len(rrsig.signature) == 64
    dns.dnssec.validate(rrset, rrsigs, {ZONE: rrset})


ZONE_TEXT = """\
$TTL 300
@    SOA ns1.example.test. hostmaster.example.test. 1 7200 3600 1209600 300
@    NS  ns1.example.test.
@    NS  ns2.example.test.
ns1  A   192.0.2.1
ns2  A   192.0.2.2
www  A   192.0.2.80
"""


def signed_zone(store: Pkcs11KskStore) -> dns.zone.Zone:
    """SOA/NS/A signed by a file-based ZSK; DNSKEY, CDS, CDNSKEY by the HSM KSK."""
    ksk = store.generate()
    signer = store.signer(ksk.key_id)
    zsk_private, zsk_dnskey = zsk()
    zone = dns.zone.from_text(ZONE_TEXT, ZONE, relativize=False)
    inception, expiration = window()
    with zone.writer() as txn:
        txn.add(ZONE, 300, ksk.dnskey.rdata)
        txn.add(ZONE, 300, zsk_dnskey)
        txn.add(dns.rrset.from_text(ZONE, 0, "IN", "CDS", ksk.dnskey.ds(ZONE).text))
        txn.add(dns.rrset.from_text(ZONE, 0, "IN", "CDNSKEY", ksk.dnskey.text))

    def rrset_signer(txn: dns.transaction.Transaction, rrset: dns.rrset.RRset) -> None:
        if rrset.rdtype in (dns.rdatatype.DNSKEY, dns.rdatatype.CDS, dns.rdatatype.CDNSKEY):
            txn.add(sign_rrset_with(rrset, signer, ZONE, inception, expiration))
        else:
            rrsig = dns.dnssec.sign(
                rrset,
                zsk_private,
                ZONE,
                zsk_dnskey,
                inception=inception,
                expiration=expiration,
                origin=ZONE,
            )
            txn.add(rrset.name, rrset.ttl, rrsig)

    dns.dnssec.sign_zone(zone, add_dnskey=False, rrset_signer=rrset_signer)
    return zone


def verifiers(path: Path) -> list[list[str]]:
    """The external validators installed here, as commands checking ``path``."""
    commands = [
        ["dnssec-verify", "-o", "example.test", str(path)],  # BIND 9
        ["ldns-verify-zone", str(path)],  # NLnet Labs ldns
    ]
    found = [c for c in commands if shutil.which(c[0])]
    if not found:
        require("dnssec-verify or ldns-verify-zone",
                "Debian package bind9-utils or ldnsutils")
    return found


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)


def test_signed_zone_passes_external_validators(store: Pkcs11KskStore, tmp_path: Path) -> None:
    path = tmp_path / "example.test.zone"
    signed_zone(store).to_file(str(path), relativize=False, want_origin=True)
    for command in verifiers(path):
        result = run(command)
        assert result.returncode == 0, f"{command[0]}: {result.stdout}{result.stderr}"
        if command[0] == "dnssec-verify":
            assert "Zone fully signed" in result.stdout + result.stderr
            assert "KSKs: 1 active" in result.stdout + result.stderr


def test_a_forged_dnskey_signature_fails_the_external_validators(
    store: Pkcs11KskStore, tmp_path: Path
) -> None:
    """The validators above really check the HSM's signature: swap in another key's."""
    zone = signed_zone(store)
    other = store.generate()
    dnskeys = zone.find_rrset(ZONE, dns.rdatatype.DNSKEY)
    rrsigs = zone.find_rdataset(ZONE, dns.rdatatype.RRSIG, dns.rdatatype.DNSKEY)
    (good,) = rrsigs
    # The same RRSIG fields, but the signature of a different key over different data.
    forged_by = sign_rrset_with(
        dns.rrset.from_rdata_list(ZONE, 300, [*dnskeys, other.dnskey.rdata]),
        store.signer(other.key_id),
        ZONE,
        *window(),
    )
    rrsigs.clear()  # type: ignore[no-untyped-call]
    rrsigs.add(good.replace(signature=next(iter(forged_by)).signature))
    path = tmp_path / "forged.zone"
    zone.to_file(str(path), relativize=False, want_origin=True)
    for command in verifiers(path):
        assert run(command).returncode != 0, f"{command[0]} accepted a forged signature"


def test_wrong_pin_without_a_login(softhsm: SoftHsm) -> None:
    with pytest.raises(KeyStoreError) as caught:
        Pkcs11KskStore(module=MODULE, token_label=softhsm.spare, pin="000000")
    message = str(caught.value)
    assert "wrong PIN" in message and softhsm.spare in message and MODULE in message


def test_wrong_pin_while_logged_in(softhsm: SoftHsm, store: Pkcs11KskStore) -> None:
    # C_Login would say "already logged in" whatever the PIN; the store compares instead.
    with pytest.raises(KeyStoreError, match="wrong PIN"):
        Pkcs11KskStore(module=MODULE, token_label=softhsm.token, pin="000000")
    assert store.list_keys() == []  # still usable


def test_missing_token_label(softhsm: SoftHsm) -> None:
    with pytest.raises(KeyStoreError) as caught:
        Pkcs11KskStore(module=MODULE, token_label="no-such-token", pin=PIN)
    message = str(caught.value)
    assert "no token labelled 'no-such-token'" in message
    assert repr(softhsm.token) in message and "softhsm2-util --init-token" in message


def test_missing_module(tmp_path: Path) -> None:
    missing = str(tmp_path / "libnothing.so")
    with pytest.raises(KeyStoreError, match=f"module {missing} does not exist"):
        Pkcs11KskStore(module=missing, token_label="x", pin=PIN)
    not_a_library = tmp_path / "libjunk.so"
    not_a_library.write_text("junk")
    with pytest.raises(KeyStoreError, match="cannot load the PKCS#11 module"):
        Pkcs11KskStore(module=str(not_a_library), token_label="x", pin=PIN)


def test_a_key_on_another_curve_under_the_prefix(softhsm: SoftHsm) -> None:
    with Pkcs11KskStore(
        module=MODULE,
        token_label=softhsm.spare,
        pin=PIN,
        key_label_prefix="mixed",
        algorithm=14,
    ) as p384:
        made = p384.generate()
        assert made.dnskey.algorithm == 14
        rrset = dns.rrset.from_rdata_list(ZONE, 3600, [made.dnskey.rdata])
        rrsigs = sign_rrset(rrset, p384, made.key_id, ZONE, *window())
        assert len(next(iter(rrsigs)).signature) == 96
        dns.dnssec.validate(rrset, rrsigs, {ZONE: rrset})
        with (
            Pkcs11KskStore(
                module=MODULE, token_label=softhsm.spare, pin=PIN, key_label_prefix="mixed"
            ) as p256,
            pytest.raises(KeyStoreError, match=r"on curve secp384r1.*ECDSAP256SHA256"),
        ):
            p256.list_keys()


def test_closed_store(store: Pkcs11KskStore) -> None:
    store.close()
    store.close()  # idempotent
    with pytest.raises(KeyStoreError, match="closed"):
        store.list_keys()


def test_make_store_and_bench(softhsm: SoftHsm) -> None:
    config = OwnerKskConfig.model_validate(
        {"store": "pkcs11", "token_label": softhsm.token, "pin": PIN, "key_label_prefix": "t-bench"}
    )
    with make_store(config) as opened:
        ksk = opened.generate()
        assert signatures_per_second(opened, ksk.key_id, seconds=0.05) > 0


def test_listing_reads_the_token_labels_once_per_index_period(
    softhsm: SoftHsm, store: Pkcs11KskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Listing one zone's keys must not read every key on a shared token each time (a
    cycle over N zones was O(N^2)): the labels are indexed per process for
    LABEL_INDEX_SECONDS. A key this process makes is listed at once; one another process
    makes, once the index is older than that."""
    import sys

    from providers.kskstore import pkcs11store

    monkeypatch.setattr(pkcs11store, "LABEL_INDEX_SECONDS", 3600.0)  # a slow box: no expiry
    mine = store.generate()
    with Pkcs11KskStore(module=MODULE, token_label=softhsm.token, pin=PIN,
                        key_label_prefix="x-" + store.prefix) as neighbour:
        theirs = [neighbour.generate() for _ in range(5)]  # other zones' keys, same token
        assert [k.key_id for k in store.list_keys()] == [mine.key_id]
        assert [k.key_id for k in neighbour.list_keys()] == sorted(k.key_id for k in theirs)
    index = next(iter(v for v in pkcs11store._LABELS.values()
                      if mine.key_id in {label for label, _ in v[1]}))
    for _ in range(20):
        assert [k.key_id for k in store.list_keys()] == [mine.key_id]
    assert next(iter(v for v in pkcs11store._LABELS.values()
                     if mine.key_id in {label for label, _ in v[1]}))[0] == index[0]

    made_elsewhere = subprocess.run(
        [sys.executable, "-c",
         "import sys\nfrom providers.kskstore.pkcs11store import Pkcs11KskStore\n"
         f"s = Pkcs11KskStore(module={MODULE!r}, token_label={softhsm.token!r}, pin={PIN!r},"
         f" key_label_prefix={store.prefix!r})\nprint(s.generate().key_id)\ns.close()"],
        capture_output=True, text=True, check=True,
        env={**os.environ, "SOFTHSM2_CONF": str(softhsm.directory / "softhsm2.conf")},
    ).stdout.strip()
    assert made_elsewhere and made_elsewhere != mine.key_id
    assert [k.key_id for k in store.list_keys()] == [mine.key_id]  # index still fresh
    monkeypatch.setattr(pkcs11store, "LABEL_INDEX_SECONDS", 0.0)
    assert [k.key_id for k in store.list_keys()] == sorted([mine.key_id, made_elsewhere])
