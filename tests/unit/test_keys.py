"""core.keys: one canonical text per DNSKEY/DS, and key <-> digest matching."""

from __future__ import annotations

import base64

import dns.dnssec
import dns.exception
import dns.rdata
import pytest
from signing import ED25519, ZONE, ZONE_TEXT, SigningKey, make_key

from core.keys import Digest, Key, role_of


@pytest.fixture(scope="module")
def ksk() -> SigningKey:
    return make_key(ksk=True)


@pytest.fixture(scope="module")
def zsk() -> SigningKey:
    return make_key(ksk=False)


def spaced(b64: str, width: int = 16) -> str:
    return " ".join(b64[i:i + width] for i in range(0, len(b64), width))


def test_parse_of_dnspython_text_gives_one_token_canonical_form(ksk: SigningKey) -> None:
    # dnspython prints the key split in chunks with blanks; the canonical text has one token.
    presented = ksk.dnskey.to_text()
    b64 = base64.b64encode(ksk.dnskey.key).decode()
    key = Key.parse(presented)
    assert key.text == f"257 3 13 {b64}"
    assert len(key.text.split(" ")) == 4
    assert key == ksk.key == Key.from_rdata(ksk.dnskey)


def test_parse_accepts_mnemonic_algorithm_and_spaced_base64(zsk: SigningKey) -> None:
    b64 = base64.b64encode(zsk.dnskey.key).decode()
    key = Key.parse(f"256 3 ECDSAP256SHA256 {spaced(b64)}")
    assert key.text == f"256 3 13 {b64}"
    assert key == zsk.key
    assert hash(key) == hash(zsk.key)  # usable as a set member across sources


def test_parse_rejects_garbage() -> None:
    with pytest.raises(dns.exception.SyntaxError):
        Key.parse("257 3 13 !!!not-base64!!!")


def test_fields_and_key_tag(ksk: SigningKey, zsk: SigningKey) -> None:
    k, z = ksk.key, zsk.key
    assert (k.flags, k.algorithm, k.sep) == (257, 13, True)
    assert (z.flags, z.algorithm, z.sep) == (256, 13, False)
    assert k.algorithm_name == "ECDSAP256SHA256"
    assert k.key_tag == dns.dnssec.key_id(ksk.dnskey)
    assert z.key_tag == dns.dnssec.key_id(zsk.dnskey)
    assert k.short() == f"{k.key_tag}/ECDSAP256SHA256/KSK"
    assert z.short() == f"{z.key_tag}/ECDSAP256SHA256/ZSK"
    assert k.rdata == ksk.dnskey


def test_ed25519_key() -> None:
    key = make_key(ksk=True, algorithm=ED25519)
    assert key.key.algorithm == int(ED25519)
    assert key.key.algorithm_name == "ED25519"
    assert key.key.key_tag == dns.dnssec.key_id(key.dnskey)


def test_role_of() -> None:
    ksk, zsk = make_key(ksk=True).key, make_key(ksk=False).key
    assert role_of(zsk) == "zsk"
    assert role_of(zsk, signs_zone_data=True) == "zsk"
    assert role_of(ksk) == "ksk"
    assert role_of(ksk, signs_zone_data=False) == "ksk"
    assert role_of(ksk, signs_zone_data=True) == "csk"


def test_ds_round_trip(ksk: SigningKey) -> None:
    digest = ksk.key.ds(ZONE_TEXT)
    expected = dns.dnssec.make_ds(ZONE, ksk.dnskey, "SHA256")
    assert digest.text == (f"{ksk.tag} 13 2 {expected.digest.hex().upper()}")
    assert (digest.key_tag, digest.algorithm, digest.digest_type) == (ksk.tag, 13, 2)
    assert Digest.parse(digest.text) == digest
    # lower-case hex and a split digest from another source compare equal
    hexdigest = expected.digest.hex()
    assert Digest.parse(f"{ksk.tag} 13 2 {hexdigest[:20]} {hexdigest[20:]}") == digest
    assert Digest.from_rdata(expected) == digest
    assert ksk.key.ds(ZONE) == digest  # Name or str


def test_digest_matches_its_key_only(ksk: SigningKey, zsk: SigningKey) -> None:
    digest = ksk.key.ds(ZONE_TEXT)
    assert digest.matches(ksk.key, ZONE_TEXT)
    assert digest.matches(ksk.key, ZONE)
    assert not digest.matches(zsk.key, ZONE_TEXT)
    assert not digest.matches(make_key(ksk=True).key, ZONE_TEXT)
    # the owner name is part of the digest
    assert not digest.matches(ksk.key, "other.test.")


def test_digest_with_right_tag_but_wrong_hash_does_not_match(ksk: SigningKey) -> None:
    digest = ksk.key.ds(ZONE_TEXT)
    forged = Digest(f"{digest.key_tag} 13 2 {'00' * 32}")
    assert not forged.matches(ksk.key, ZONE_TEXT)
    wrong_alg = Digest(digest.text.replace(" 13 2 ", " 8 2 ", 1))
    assert not wrong_alg.matches(ksk.key, ZONE_TEXT)


def test_sha384_digest_matches_the_same_key(ksk: SigningKey) -> None:
    sha384 = ksk.key.ds(ZONE_TEXT, 4)
    assert sha384.digest_type == 4
    assert sha384 != ksk.key.ds(ZONE_TEXT)
    assert len(sha384.text.split()[3]) == 96
    assert sha384.matches(ksk.key, ZONE_TEXT)


def test_unknown_digest_type_does_not_match(ksk: SigningKey) -> None:
    odd = Digest(f"{ksk.tag} 13 99 {'AB' * 32}")
    assert not odd.matches(ksk.key, ZONE_TEXT)


def test_sha1_digest_matches_the_same_key(ksk: SigningKey, zsk: SigningKey) -> None:
    # RFC 8624: SHA-1 DS must not be created, but parents still publish them and
    # validators must accept them, so a SHA-1 DS matches its key (and only its key).
    sha1 = Digest.from_rdata(dns.dnssec.make_ds(ZONE, ksk.dnskey, "SHA1", validating=True))
    assert sha1.digest_type == 1
    assert sha1.matches(ksk.key, ZONE_TEXT)
    assert not sha1.matches(zsk.key, ZONE_TEXT)
    forged = Digest(f"{ksk.tag} 13 1 {'00' * 20}")
    assert not forged.matches(ksk.key, ZONE_TEXT)


def test_delete_cds_from_rdata_is_delete() -> None:
    # As a CDS rdata (what a nameserver serves), RFC 8078's delete form is readable.
    rdata = dns.rdata.from_text("IN", "CDS", "0 0 0 00")
    delete = Digest.from_rdata(rdata)
    assert delete.text == "0 0 0 00"
    assert delete.is_delete
    assert not make_key(ksk=True).key.ds(ZONE_TEXT).is_delete
    assert not delete.matches(make_key(ksk=True).key, ZONE_TEXT)


def test_delete_cds_text_parses() -> None:
    # providers/powerdns.py parses the CDS rrset contents of its API with Digest.parse.
    delete = Digest.parse("0 0 0 00")
    assert delete.text == "0 0 0 00"
    assert delete.is_delete


def test_keys_and_digests_are_ordered_and_hashable(ksk: SigningKey, zsk: SigningKey) -> None:
    assert sorted([zsk.key, ksk.key]) == sorted([ksk.key, zsk.key])
    assert len({ksk.key, Key.parse(ksk.dnskey.to_text()), zsk.key}) == 2
