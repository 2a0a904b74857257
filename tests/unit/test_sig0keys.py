"""providers/sig0keys.py: the child's SIG(0) keys as BIND-format files in a private
directory; interoperable with dnssec-keygen and nsupdate in both directions."""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import dns.name
import dns.rdatatype
import dns.update
import pytest
from dns.dnssectypes import Algorithm
from prereq import needs
from sig0_bind import nsupdate

from core import sig0
from core.sig0 import SIG0_ALGORITHMS, Sig0Key, parse, sign, verify
from providers.sig0keys import Sig0KeyStore, Sig0KeyStoreError

CHILD = dns.name.from_text("child.test.")
NOW = 1_790_000_000


@pytest.fixture
def keydir(tmp_path: Path) -> Path:
    path = tmp_path / "sig0"
    path.mkdir(mode=0o700)
    path.chmod(0o700)
    return path


def _update() -> bytes:
    update = dns.update.UpdateMessage("test.")
    update.replace("child.test.", 3600, "NS", "ns1.example.")
    return update.to_wire()


@pytest.mark.parametrize("algorithm", SIG0_ALGORITHMS, ids=lambda a: a.name)
def test_generate_list_load_sign(keydir: Path, algorithm: Algorithm) -> None:
    store = Sig0KeyStore(keydir)
    made = store.generate("child.test.", algorithm,
                          now=datetime(2026, 12, 2, 7, 0, 0, tzinfo=UTC))
    assert made.key_id == f"Kchild.test.+{int(algorithm):03d}+{made.key_tag:05d}"
    assert made.zone == CHILD and made.algorithm == algorithm
    assert (made.key.flags, made.key.protocol) == (512, 3)
    for suffix in (".private", ".key"):
        path = keydir / f"{made.key_id}{suffix}"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (keydir / f"{made.key_id}.key").read_text().startswith("child.test. IN KEY 512 3 ")
    assert "Private-key-format: v1.3" in (keydir / f"{made.key_id}.private").read_text()

    again = Sig0KeyStore(keydir)  # a fresh instance reads what was written
    assert again.list_keys() == [made]
    assert again.list_keys("other.test.") == []
    key = again.load(made.key_id)
    signed = parse(sign(_update(), key, now=NOW))
    verify(signed, again.key_rrset("child.test."), now=NOW)
    assert made.created == datetime(2026, 12, 2, 7, 0, 0, tzinfo=UTC)


def test_several_zones_and_keys(keydir: Path) -> None:
    store = Sig0KeyStore(keydir)
    first = store.generate("child.test.", now=datetime(2026, 1, 1, tzinfo=UTC))
    second = store.generate("child.test.", Algorithm.ED25519,
                            now=datetime(2026, 2, 1, tzinfo=UTC))
    other = store.generate("Other.TEST.")
    assert store.list_keys("child.test.") == [first, second]  # oldest first
    assert store.list_keys("other.test.") == [other]
    rrset = store.key_rrset("child.test.", ttl=600)
    assert rrset.rdtype == dns.rdatatype.KEY and rrset.ttl == 600
    assert set(rrset) == {first.key, second.key}
    with pytest.raises(Sig0KeyStoreError, match=re.escape("no SIG(0) key for nokeys.test.")):
        store.key_rrset("nokeys.test.")


def test_generate_never_reuses_a_tag_of_the_zone(keydir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    store = Sig0KeyStore(keydir)
    first = store.generate("child.test.")
    same = store.load(first.key_id)
    fresh = Sig0Key.generate(CHILD)
    queue = [same, fresh]
    monkeypatch.setattr(sig0.Sig0Key, "generate", classmethod(lambda cls, *a: queue.pop(0)))
    second = store.generate("child.test.")
    assert second.key_tag == fresh.key_tag != first.key_tag
    assert queue == []


def test_directory_must_be_private_and_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(Sig0KeyStoreError, match=re.escape("does not exist: check [zones.parent]")):
        Sig0KeyStore(missing)
    made = Sig0KeyStore(missing, create=True)
    assert stat.S_IMODE(made.directory.stat().st_mode) == 0o700
    missing.chmod(0o750)
    with pytest.raises(Sig0KeyStoreError, match=f"run `chmod 700 {missing}`"):
        Sig0KeyStore(missing)
    with pytest.raises(Sig0KeyStoreError, match=r"parent \S+ does not exist"):
        Sig0KeyStore(tmp_path / "a" / "b", create=True)


def test_a_key_file_others_can_read_is_refused(keydir: Path) -> None:
    store = Sig0KeyStore(keydir)
    made = store.generate("child.test.")
    private = keydir / f"{made.key_id}.private"
    private.chmod(0o640)
    with pytest.raises(Sig0KeyStoreError, match=re.escape(f"run `chmod 600 {private}`")):
        store.list_keys()
    private.chmod(0o600)
    (keydir / f"{made.key_id}.key").chmod(0o644)  # the public half may be readable
    assert store.list_keys() == [made]


def test_renamed_or_mismatched_files_are_refused(keydir: Path) -> None:
    store = Sig0KeyStore(keydir)
    a = store.generate("child.test.")
    b = store.generate("child.test.")
    a_private = (keydir / f"{a.key_id}.private").read_bytes()
    # a .key that belongs to another key
    (keydir / f"{a.key_id}.key").unlink()
    shutil.copy(keydir / f"{b.key_id}.key", keydir / f"{a.key_id}.key")
    with pytest.raises(Sig0KeyStoreError, match="do not belong together"):
        store.list_keys()
    # b's private key under a's name (no .key): tag in the name and key disagree
    (keydir / f"{a.key_id}.key").unlink()
    (keydir / f"{a.key_id}.private").write_bytes((keydir / f"{b.key_id}.private").read_bytes())
    with pytest.raises(Sig0KeyStoreError, match="renamed or altered"):
        store.list_keys()
    (keydir / f"{a.key_id}.private").write_bytes(a_private)
    assert {k.key_id for k in store.list_keys()} == {a.key_id, b.key_id}


def test_unknown_key_and_bad_files(keydir: Path) -> None:
    store = Sig0KeyStore(keydir)
    with pytest.raises(Sig0KeyStoreError, match=re.escape("no key 'Kchild.test.+013+00001'")):
        store.load("Kchild.test.+013+00001")
    with pytest.raises(Sig0KeyStoreError, match="not supported for SIG\\(0\\)"):
        store.generate("child.test.", Algorithm.RSASHA256)
    bad = keydir / "Kchild.test.+013+00001.private"
    bad.write_text("Private-key-format: v1.3\nAlgorithm: 13 (ECDSAP256SHA256)\n")
    bad.chmod(0o600)
    with pytest.raises(Sig0KeyStoreError, match="no usable 'PrivateKey:'"):
        store.list_keys()
    bad.write_text("Private-key-format: v1.3\nAlgorithm: 8 (RSASHA256)\nPrivateKey: AA==\n")
    with pytest.raises(Sig0KeyStoreError, match="RSASHA256 key; SIG\\(0\\) keys here must be"):
        store.list_keys()
    (keydir / "README").write_text("ignored")  # other files are not keys
    bad.unlink()
    assert store.list_keys() == []


@needs("dnssec-keygen", what="Debian package bind9-utils")
@pytest.mark.parametrize("algorithm", ["ECDSAP256SHA256", "ED25519"])
def test_a_dnssec_keygen_key_dropped_in_signs(keydir: Path, algorithm: str) -> None:
    out = subprocess.run(["dnssec-keygen", "-q", "-K", str(keydir), "-T", "KEY", "-a",
                          algorithm, "-n", "HOST", "child.test."],
                         capture_output=True, text=True, check=True)
    key_id = out.stdout.strip()
    store = Sig0KeyStore(keydir)
    [listed] = store.list_keys("child.test.")
    assert listed.key_id == key_id and listed.created is not None
    bind_key_line = (keydir / f"{key_id}.key").read_text().splitlines()[-1]
    assert listed.key.to_text().replace(" ", "") in bind_key_line.replace(" ", "")
    signed = parse(sign(_update(), store.load(key_id), now=NOW))
    verify(signed, [listed.key], now=NOW, name=CHILD)


@needs("nsupdate", what="Debian package bind9-dnsutils")
@pytest.mark.parametrize("algorithm", SIG0_ALGORITHMS, ids=lambda a: a.name)
def test_nsupdate_signs_with_a_generated_key(keydir: Path, algorithm: Algorithm) -> None:
    made = Sig0KeyStore(keydir).generate("child.test.", algorithm)
    wire = nsupdate(keydir / f"{made.key_id}.private", tcp=False)
    verify(parse(wire), [made.key], now=int(time.time()), name=CHILD)


def test_retire_moves_both_files_and_the_next_key_signs(keydir: Path) -> None:
    """A SIG(0) key roll's end: the predecessor leaves the listing (so the successor is the
    oldest, the signing key) and its files are kept, private, in retired/."""
    store = Sig0KeyStore(keydir)
    old = store.generate(CHILD, now=datetime(2026, 12, 1, tzinfo=UTC))
    new = store.generate(CHILD, now=datetime(2026, 12, 2, tzinfo=UTC))
    assert [k.key_id for k in store.list_keys(CHILD)] == [old.key_id, new.key_id]
    assert store.retire(old.key_id) is True
    assert [k.key_id for k in store.list_keys(CHILD)] == [new.key_id]
    assert list(store.key_rrset(CHILD)) == [new.key]
    retired = keydir / "retired"
    assert sorted(p.name for p in retired.iterdir()) == [f"{old.key_id}.key",
                                                         f"{old.key_id}.private"]
    assert stat.S_IMODE(retired.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in retired.iterdir())
    assert store.retire(old.key_id) is False  # a re-run after a crash changes nothing
    with pytest.raises(Sig0KeyStoreError, match="no key"):
        store.load(old.key_id)
    assert store.load(new.key_id).key_tag == new.key_tag
