"""The file owner-KSK store: PEM keys it makes, BIND keys it imports, the refusals."""

from __future__ import annotations

import base64
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dns.dnssec
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from dns.dnssecalgs.base import GenericPrivateKey
from dns.dnssectypes import Algorithm
from dns.exception import ValidationFailure
from prereq import needs

from bench.kskstore_bench import signatures_per_second, typical_dnskey_rrset
from core.errors import MultisignerError
from core.keys import Key
from providers.kskstore import (
    KeyStoreError,
    OwnerKskConfig,
    StoreSigner,
    make_store,
    sign_rrset,
    sign_rrset_with,
)
from providers.kskstore.filestore import FileKskStore

ZONE = dns.name.from_text("example.test.")
NOW = datetime.now(UTC).replace(microsecond=0)
INCEPTION, EXPIRATION = NOW - timedelta(hours=1), NOW + timedelta(days=14)


@pytest.fixture
def keydir(tmp_path: Path) -> Path:
    directory = tmp_path / "keys"
    directory.mkdir(mode=0o700)
    directory.chmod(0o700)
    return directory


def zsk_text() -> str:
    private = ec.generate_private_key(ec.SECP256R1())
    return dns.dnssec.make_dnskey(private.public_key(), Algorithm.ECDSAP256SHA256, 256).to_text()


def dnskey_set(*texts: str) -> dns.rrset.RRset:
    return dns.rrset.from_text(ZONE, 3600, dns.rdataclass.IN, dns.rdatatype.DNSKEY, *texts)


def validate(rrset: dns.rrset.RRset, rrsigs: dns.rrset.RRset, keys: dns.rrset.RRset) -> None:
    dns.dnssec.validate(rrset, rrsigs, {ZONE: keys}, now=NOW.timestamp())


def write_bind_private(directory: Path, private: object, algorithm: int, tag: int) -> Path:
    """Private-key-format v1.3 as dnssec-keygen writes it."""
    if isinstance(private, ec.EllipticCurvePrivateKey):
        secret = private.private_numbers().private_value.to_bytes(32, "big")
    else:
        assert isinstance(private, ed25519.Ed25519PrivateKey)
        secret = private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
    name = Algorithm.to_text(Algorithm.make(algorithm))
    path = directory / f"Kexample.test.+{algorithm:03d}+{tag:05d}.private"
    path.write_text(
        "Private-key-format: v1.3\n"
        f"Algorithm: {algorithm} ({name})\n"
        f"PrivateKey: {base64.b64encode(secret).decode()}\n"
        "Created: 20250301120000\nPublish: 20250301120000\nActivate: 20250301120000\n"
    )
    path.chmod(0o600)
    return path


# -- generate, list, sign ------------------------------------------------------------------


def test_a_missing_directory_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    """A typo or an unmounted volume must not look like an empty store."""
    for directory in (tmp_path / "typo", tmp_path / "not" / "yet"):
        with pytest.raises(KeyStoreError, match=f"key directory {directory} does not exist.*"
                           "ksk init"):
            FileKskStore(directory)
        assert not directory.exists()
    config = OwnerKskConfig(store="file", directory=tmp_path / "typo")
    with pytest.raises(KeyStoreError, match="does not exist"):
        make_store(config)
    assert not (tmp_path / "typo").exists()


def test_create_makes_only_the_last_component(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match=f"its parent {tmp_path / 'not'} does not exist"):
        FileKskStore(tmp_path / "not" / "yet", create=True)
    assert not (tmp_path / "not").exists()


def test_generate_creates_a_private_directory_and_0600_pem(tmp_path: Path) -> None:
    directory = tmp_path / "new"
    old = os.umask(0o022)
    try:
        store = FileKskStore(directory, create=True)
    finally:
        os.umask(old)
    assert directory.stat().st_mode & 0o777 == 0o700
    key = store.generate()
    path = directory / f"{key.key_id}.pem"
    assert path.stat().st_mode & 0o777 == 0o600
    assert key.dnskey.flags == 257 and key.dnskey.algorithm == 13
    assert key.key_id.endswith(f"-{key.key_tag:05d}")
    assert key.created is not None and key.created.tzinfo is not None
    assert [p.name for p in directory.iterdir()] == [path.name]  # no temp file left
    assert b"PRIVATE KEY" in path.read_bytes()


def test_list_keys_sees_keys_of_earlier_runs(keydir: Path) -> None:
    first = FileKskStore(keydir).generate()
    second = FileKskStore(keydir).generate()
    with FileKskStore(keydir) as store:
        assert {k.key_id for k in store.list_keys()} == {first.key_id, second.key_id}
        assert store.get(second.key_id).dnskey == second.dnskey


def test_signs_the_combined_dnskey_rrset(keydir: Path) -> None:
    store = FileKskStore(keydir)
    ksk = store.generate()
    rrset = dnskey_set(ksk.dnskey.text, zsk_text(), zsk_text())
    rrsigs = sign_rrset(rrset, store, ksk.key_id, ZONE, INCEPTION, EXPIRATION)
    assert rrsigs.rdtype == dns.rdatatype.RRSIG and rrsigs.covers == dns.rdatatype.DNSKEY
    assert rrsigs.name == ZONE and rrsigs.ttl == 3600
    (rrsig,) = rrsigs
    assert rrsig.key_tag == ksk.key_tag and rrsig.signer == ZONE
    validate(rrset, rrsigs, rrset)
    with pytest.raises(ValidationFailure):  # a changed set no longer validates
        changed = dnskey_set(ksk.dnskey.text, zsk_text())
        validate(changed, rrsigs, changed)


def test_signs_cds_and_cdnskey(keydir: Path) -> None:
    store = FileKskStore(keydir)
    ksk = store.generate()
    keys = dnskey_set(ksk.dnskey.text, zsk_text())
    cds = dns.rrset.from_text(ZONE, 0, "IN", "CDS", ksk.dnskey.ds(ZONE).text)
    cdnskey = dns.rrset.from_text(ZONE, 0, "IN", "CDNSKEY", ksk.dnskey.text)
    for rrset in (cds, cdnskey):
        validate(rrset, sign_rrset(rrset, store, ksk.key_id, ZONE, INCEPTION, EXPIRATION), keys)


def test_two_ksks_sign_during_a_rollover(keydir: Path) -> None:
    store = FileKskStore(keydir)
    old, new = store.generate(), store.generate()
    rrset = dnskey_set(old.dnskey.text, new.dnskey.text, zsk_text())
    rrsigs = sign_rrset(rrset, store, [old.key_id, new.key_id], ZONE, INCEPTION, EXPIRATION)
    assert sorted(r.key_tag for r in rrsigs) == sorted([old.key_tag, new.key_tag])
    for key in (old, new):  # each signature validates on its own
        validate(rrset, rrsigs, dnskey_set(key.dnskey.text))


def test_ed25519_store(keydir: Path) -> None:
    store = FileKskStore(keydir, algorithm=Algorithm.ED25519)
    ksk = store.generate()
    assert ksk.dnskey.algorithm == 15
    rrset = dnskey_set(ksk.dnskey.text, zsk_text())
    validate(rrset, sign_rrset(rrset, store, ksk.key_id, ZONE, INCEPTION, EXPIRATION), rrset)


def test_the_signer_is_a_dnspython_private_key_that_keeps_its_secret(keydir: Path) -> None:
    store = FileKskStore(keydir)
    ksk = store.generate()
    signer = store.signer(ksk.key_id)
    assert isinstance(signer, GenericPrivateKey)
    assert signer.public_key().to_dnskey(flags=257) == ksk.dnskey.rdata
    rrset = dnskey_set(ksk.dnskey.text)
    rrsig = dns.dnssec.sign(
        rrset, signer, ZONE, ksk.dnskey.rdata, inception=INCEPTION, expiration=EXPIRATION
    )
    validate(rrset, dns.rrset.from_rdata(ZONE, 3600, rrsig), rrset)
    with pytest.raises(NotImplementedError):
        signer.to_pem()
    assert "PRIVATE" not in repr(signer)


def test_refuses_to_sign_a_dnskey_rrset_without_the_ksk(keydir: Path) -> None:
    store = FileKskStore(keydir)
    ksk = store.generate()
    with pytest.raises(KeyStoreError, match="does not contain this KSK"):
        sign_rrset(dnskey_set(zsk_text()), store, ksk.key_id, ZONE, INCEPTION, EXPIRATION)


def test_refuses_naive_times_and_names_outside_the_zone(keydir: Path) -> None:
    store = FileKskStore(keydir)
    ksk = store.generate()
    rrset = dnskey_set(ksk.dnskey.text)
    with pytest.raises(ValueError, match="timezone-aware"):
        sign_rrset(rrset, store, ksk.key_id, ZONE, datetime(2025, 1, 1), EXPIRATION)
    with pytest.raises(ValueError, match="not after inception"):
        sign_rrset(rrset, store, ksk.key_id, ZONE, EXPIRATION, INCEPTION)
    with pytest.raises(ValueError, match="not in zone"):
        sign_rrset(rrset, store, ksk.key_id, "other.test.", INCEPTION, EXPIRATION)


def test_unknown_key_id(keydir: Path) -> None:
    store = FileKskStore(keydir)
    ksk = store.generate()
    with pytest.raises(KeyStoreError, match=f"no key file for key id 'nope'.*{ksk.key_id}"):
        store.signer("nope")
    with pytest.raises(KeyStoreError, match="no key 'nope'"):
        store.get("nope")


# -- permissions ---------------------------------------------------------------------------


def test_refuses_a_group_readable_key_file(keydir: Path) -> None:
    ksk = FileKskStore(keydir).generate()
    path = keydir / f"{ksk.key_id}.pem"
    path.chmod(0o644)
    with pytest.raises(KeyStoreError) as caught:
        FileKskStore(keydir)
    message = str(caught.value)
    assert str(path) in message and "0644" in message and f"chmod 600 {path}" in message
    assert isinstance(caught.value, MultisignerError)


def test_refuses_a_world_accessible_directory(keydir: Path) -> None:
    FileKskStore(keydir).generate()
    store = FileKskStore(keydir)
    keydir.chmod(0o755)
    for action in (lambda: FileKskStore(keydir), store.list_keys, store.generate):
        with pytest.raises(KeyStoreError, match=f"chmod 700 {keydir}"):
            action()


def test_refuses_a_key_file_that_became_readable_after_opening(keydir: Path) -> None:
    store = FileKskStore(keydir)
    ksk = store.generate()
    (keydir / f"{ksk.key_id}.pem").chmod(0o640)
    with pytest.raises(KeyStoreError, match="chmod 600"):
        store.signer(ksk.key_id)


def test_ignores_public_and_unrelated_files(keydir: Path) -> None:
    store = FileKskStore(keydir)
    ksk = store.generate()
    (keydir / "README").write_text("hello")
    (keydir / "README").chmod(0o644)
    (keydir / ".tmp-leftover.pem").write_text("partial")
    assert [k.key_id for k in store.list_keys()] == [ksk.key_id]


# -- BIND key files ------------------------------------------------------------------------


@needs("dnssec-keygen", what="Debian package bind9-utils")
def test_imports_a_dnssec_keygen_ksk(keydir: Path) -> None:
    name = subprocess.run(
        [
            "dnssec-keygen",
            "-q",
            "-a",
            "ECDSAP256SHA256",
            "-f",
            "KSK",
            "-K",
            str(keydir),
            "example.test",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    public_line = (keydir / f"{name}.key").read_text().splitlines()[-1]
    bind_key = Key.parse(public_line.split("DNSKEY", 1)[1])
    store = FileKskStore(keydir, expect_dnskey=[bind_key])
    (ksk,) = store.list_keys()
    assert ksk.key_id == name and ksk.dnskey == bind_key
    assert ksk.created is not None
    rrset = dnskey_set(ksk.dnskey.text, zsk_text(), zsk_text())
    validate(rrset, sign_rrset(rrset, store, name, ZONE, INCEPTION, EXPIRATION), rrset)


def test_imports_a_handwritten_bind_private_file(keydir: Path) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    dnskey = Key.from_rdata(dns.dnssec.make_dnskey(private.public_key(), 13, 257))
    path = write_bind_private(keydir, private, 13, dnskey.key_tag)
    store = FileKskStore(keydir)
    (ksk,) = store.list_keys()
    assert ksk.key_id == path.name.removesuffix(".private") and ksk.dnskey == dnskey
    assert ksk.created == datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    rrset = dnskey_set(dnskey.text, zsk_text())
    validate(rrset, sign_rrset(rrset, store, ksk.key_id, ZONE, INCEPTION, EXPIRATION), rrset)


def test_bind_file_of_another_algorithm_is_named(keydir: Path) -> None:
    private = ed25519.Ed25519PrivateKey.generate()
    path = write_bind_private(keydir, private, 15, 12345)
    with pytest.raises(KeyStoreError) as caught:
        FileKskStore(keydir)  # an ECDSAP256SHA256 store
    message = str(caught.value)
    assert str(path) in message and "algorithm 15 (ED25519)" in message
    assert "ECDSAP256SHA256" in message


def test_bind_private_and_key_files_that_do_not_match(keydir: Path) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    dnskey = Key.from_rdata(dns.dnssec.make_dnskey(private.public_key(), 13, 257))
    path = write_bind_private(keydir, private, 13, dnskey.key_tag)
    other = ec.generate_private_key(ec.SECP256R1())
    other_key = dns.dnssec.make_dnskey(other.public_key(), 13, 257)
    path.with_suffix(".key").write_text(f"example.test. IN DNSKEY {other_key.to_text()}\n")
    with pytest.raises(KeyStoreError, match="do not belong together"):
        FileKskStore(keydir)


def test_bind_file_renamed_to_another_tag(keydir: Path) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    dnskey = Key.from_rdata(dns.dnssec.make_dnskey(private.public_key(), 13, 257))
    write_bind_private(keydir, private, 13, (dnskey.key_tag + 7) % 65536)
    with pytest.raises(KeyStoreError, match="file name says key tag"):
        FileKskStore(keydir)


def test_bind_file_without_private_key(keydir: Path) -> None:
    path = keydir / "Kexample.test.+013+00001.private"
    path.write_text("Private-key-format: v1.3\nAlgorithm: 13 (ECDSAP256SHA256)\n")
    path.chmod(0o600)
    with pytest.raises(KeyStoreError, match="PrivateKey"):
        FileKskStore(keydir)


# -- PEM files of the wrong kind, expectations ---------------------------------------------


def _write_pem(path: Path, private: object, password: bytes | None = None) -> None:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    path.write_bytes(
        private.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
    )
    path.chmod(0o600)


@pytest.mark.parametrize(
    ("make", "described"),
    [
        (lambda: ec.generate_private_key(ec.SECP384R1()), "ECDSAP384SHA384"),
        (lambda: rsa.generate_private_key(65537, 2048), "RSA 2048-bit"),
        (ed25519.Ed25519PrivateKey.generate, "ED25519"),
    ],
)
def test_pem_of_another_algorithm_is_named(keydir: Path, make: object, described: str) -> None:
    path = keydir / "imported.pem"
    _write_pem(path, make())  # type: ignore[operator]
    with pytest.raises(KeyStoreError) as caught:
        FileKskStore(keydir)
    message = str(caught.value)
    assert str(path) in message and described in message and "ECDSAP256SHA256" in message


def test_encrypted_pem_is_refused(keydir: Path) -> None:
    _write_pem(keydir / "locked.pem", ec.generate_private_key(ec.SECP256R1()), b"secret")
    with pytest.raises(KeyStoreError, match="encrypted PEM"):
        FileKskStore(keydir)


def test_garbage_pem_is_refused(keydir: Path) -> None:
    (keydir / "junk.pem").write_text("not a key")
    (keydir / "junk.pem").chmod(0o600)
    with pytest.raises(KeyStoreError, match=r"junk\.pem is not a readable PEM"):
        FileKskStore(keydir)


def test_expected_dnskey_present(keydir: Path) -> None:
    ksk = FileKskStore(keydir).generate()
    FileKskStore(keydir, expect_dnskey=[ksk.dnskey.text])  # no error
    zsk_form = Key(ksk.dnskey.text.replace("257", "256", 1))  # flags do not matter
    FileKskStore(keydir, expect_dnskey=[zsk_form])


def test_expected_dnskey_missing_is_an_error(keydir: Path) -> None:
    ksk = FileKskStore(keydir).generate()
    expected = Key.parse(zsk_text().replace("256", "257", 1))
    with pytest.raises(KeyStoreError) as caught:
        FileKskStore(keydir, expect_dnskey=[expected])
    message = str(caught.value)
    assert f"{expected.key_tag}/ECDSAP256SHA256/KSK" in message
    assert f"{ksk.key_id}.pem → tag {ksk.key_tag}" in message
    assert "expect_dnskey" in message


# -- config, factory, bench ----------------------------------------------------------------


def test_make_store_from_config(keydir: Path) -> None:
    ksk = FileKskStore(keydir).generate()
    config = OwnerKskConfig(store="file", directory=keydir, expect_dnskey=[ksk.dnskey.text])
    with make_store(config) as store:
        assert isinstance(store, FileKskStore)
        assert store.list_keys()[0].dnskey == ksk.dnskey
        assert "file" in store.name and str(keydir) in store.name


def test_signer_reused_for_many_rrsets(keydir: Path) -> None:
    store = FileKskStore(keydir)
    ksk = store.generate()
    signer = store.signer(ksk.key_id)
    assert isinstance(signer, StoreSigner)
    rrset = typical_dnskey_rrset(ksk.dnskey.text)
    for _ in range(3):
        validate(rrset, sign_rrset_with(rrset, signer, ZONE, INCEPTION, EXPIRATION), rrset)


def test_bench_counts_signatures(keydir: Path) -> None:
    store = FileKskStore(keydir)
    ksk = store.generate()
    assert signatures_per_second(store, ksk.key_id, seconds=0.05) > 0


def test_a_broken_signer_is_caught_before_anything_is_published(keydir: Path) -> None:
    store = FileKskStore(keydir)
    ksk = store.generate()
    broken = StoreSigner(ksk, raw_sign=lambda data, det: bytes(64), store=store.name)
    with pytest.raises(KeyStoreError, match="does not verify"):
        sign_rrset_with(dnskey_set(ksk.dnskey.text), broken, ZONE, INCEPTION, EXPIRATION)


def test_directory_is_checked_for_being_a_directory(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("")
    with pytest.raises(KeyStoreError, match="not a directory"):
        FileKskStore(path)
    os.chmod(tmp_path, 0o700)
