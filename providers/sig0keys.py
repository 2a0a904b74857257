"""The child's SIG(0) keys (RFC 2931): generated, kept as files, listed, loaded to sign.

Layout of ``sig0_directory`` (one directory may hold the keys of several zones):

- ``K<zone>+<alg>+<tag>.private`` — BIND's Private-key-format v1.3, mode 0600, exactly
  what ``dnssec-keygen -T KEY -n HOST`` writes: the same file works with
  ``nsupdate -k`` (an operator's manual fallback), and a key made by dnssec-keygen can
  be dropped in;
- ``K<zone>+<alg>+<tag>.key`` — its KEY record (``child.test. IN KEY 512 3 13 ...``;
  public, so any mode), the RRset the controller publishes at the child apex; when
  missing, the KEY is derived from the private key with flags 512 (see ``core/sig0.py``).

- ``retired/`` — keys a SIG(0) key roll took out of use (``retire``): the same two files,
  moved, never deleted (removing private key material is the operator's call). Keys
  there are not listed, published or used.

The directory must be 0700 and every key file 0600, checked like the owner-KSK file
store (``providers/private_files.py``); a missing directory is an error unless the
caller asks for it to be created (``create=True``).
Algorithms: ECDSAP256SHA256 (default), ECDSAP384SHA384, ED25519.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.dnssectypes import Algorithm
from dns.rdtypes.ANY.KEY import KEY

from core.errors import MultisignerError
from core.sig0 import SIG0_ALGORITHMS, Sig0Key, key_tag_of
from providers.private_files import (
    bind_private_text,
    check_private_directory,
    check_private_file,
    create_private_directory,
    private_from_bind,
    read_bind_fields,
    write_private_file,
)

_FILE = re.compile(r"^K(?P<zone>.+\.)\+(?P<alg>\d{3})\+(?P<tag>\d{5})\.private$")
_CREATED = "%Y%m%d%H%M%S"
RETIRED = "retired"


class Sig0KeyStoreError(MultisignerError):
    """The SIG(0) key directory or one of its files cannot be used; says which and why."""


@dataclass(frozen=True)
class StoredSig0Key:
    """One key of the store: its id (the file name without ``.private``), the zone it
    signs for, and the KEY rdata to publish at the zone's apex."""

    key_id: str
    zone: dns.name.Name
    key: KEY
    created: datetime | None

    @property
    def algorithm(self) -> Algorithm:
        return Algorithm(self.key.algorithm)

    @property
    def key_tag(self) -> int:
        return key_tag_of(self.key)


class Sig0KeyStore:
    """SIG(0) keys as files in ``directory`` (see the module docstring)."""

    def __init__(self, directory: Path | str, *, create: bool = False) -> None:
        self.directory = Path(directory)
        if not self.directory.exists():
            if not create:
                raise self.error(
                    f"the directory {self.directory} does not exist: check [zones.parent] "
                    "sig0_directory (a typo? a volume not mounted?)")
            create_private_directory(self.directory, self.error)
        check_private_directory(self.directory, self.error)

    def error(self, message: str) -> Sig0KeyStoreError:
        return Sig0KeyStoreError(f"SIG(0) key store {self.directory}: {message}")

    # -- reading ------------------------------------------------------------------------

    def list_keys(self, zone: dns.name.Name | str | None = None) -> list[StoredSig0Key]:
        """Every key (of ``zone`` when given), oldest first."""
        check_private_directory(self.directory, self.error)
        wanted = _name(zone) if zone is not None else None
        found = [self._read(path)[0] for path in sorted(self.directory.iterdir())
                 if _FILE.match(path.name) and path.is_file()]
        found = [k for k in found if wanted is None or k.zone == wanted]
        return sorted(found, key=lambda k: (k.created or datetime.min.replace(tzinfo=UTC),
                                            k.key_id))

    def load(self, key_id: str) -> Sig0Key:
        """The private key ``key_id`` (``K<zone>+<alg>+<tag>``), ready to sign."""
        path = self.directory / f"{key_id}.private"
        if "/" in key_id or not _FILE.match(path.name) or not path.is_file():
            have = ", ".join(k.key_id for k in self.list_keys()) or "none"
            raise self.error(f"no key {key_id!r}; the store holds: {have}")
        return self._read(path)[1]

    def key_rrset(self, zone: dns.name.Name | str, ttl: int = 3600) -> dns.rrset.RRset:
        """The KEY RRset to publish at ``zone``'s apex: every key of the zone here."""
        owner = _name(zone)
        keys = self.list_keys(owner)
        if not keys:
            raise self.error(f"no SIG(0) key for {owner}; generate one first")
        return dns.rrset.from_rdata_list(owner, ttl, [k.key for k in keys])

    def _read(self, path: Path) -> tuple[StoredSig0Key, Sig0Key]:
        match = _FILE.match(path.name)
        assert match is not None
        check_private_file(path, self.error)
        try:
            fields = read_bind_fields(path)
            algorithm = Algorithm.make(int(fields.get("Algorithm", "").split()[0]))
        except (OSError, UnicodeDecodeError, ValueError, IndexError) as exc:
            raise self.error(f"{path} is not a readable BIND private key file ({exc})") from None
        if algorithm not in SIG0_ALGORITHMS:
            raise self.error(
                f"{path} is a {Algorithm.to_text(algorithm)} key; SIG(0) keys here must be "
                + ", ".join(a.name for a in SIG0_ALGORITHMS))
        try:
            secret = base64.b64decode(fields["PrivateKey"], validate=True)
            private = private_from_bind(algorithm, secret)
        except (KeyError, ValueError) as exc:
            raise self.error(f"{path} has no usable 'PrivateKey:' field ({exc})") from None
        zone = _name(match["zone"])
        sig0 = Sig0Key(zone, algorithm, private)
        key = self._published_key(path, sig0)
        if key_tag_of(key) != int(match["tag"]) or int(match["alg"]) != algorithm:
            raise self.error(
                f"{path}: the file name says algorithm {int(match['alg'])} tag "
                f"{int(match['tag'])}, the key in it is algorithm {int(algorithm)} tag "
                f"{key_tag_of(key)}; the file was renamed or altered")
        created = None
        if "Created" in fields:
            try:
                created = datetime.strptime(fields["Created"][:14], _CREATED).replace(tzinfo=UTC)
            except ValueError:
                created = None
        return StoredSig0Key(path.name[: -len(".private")], zone, key, created), sig0

    def _published_key(self, path: Path, sig0: Sig0Key) -> KEY:
        """The KEY of the ``.key`` companion (checked against the private key), or the
        derived one (flags 512) when there is no companion."""
        companion = path.with_name(path.name[: -len(".private")] + ".key")
        derived = sig0.key_rdata()
        if not companion.exists():
            return derived
        for line in companion.read_text().splitlines():
            if line.startswith(";") or " KEY " not in f" {line} ":
                continue
            try:
                owner, rest = line.split(None, 1)
                key = dns.rdata.from_text("IN", "KEY", rest.split("KEY", 1)[1].strip())
            except Exception as exc:
                raise self.error(f"{companion} has an unreadable KEY record ({exc})") from None
            if not isinstance(key, KEY) or key.key != derived.key or dns.name.from_text(
                    owner) != sig0.name or key.algorithm != derived.algorithm:
                raise self.error(
                    f"{path} and {companion} do not belong together (other owner, "
                    "algorithm or key); copy the matching pair")
            return key
        raise self.error(f"{companion} holds no KEY record")

    # -- writing ------------------------------------------------------------------------

    def generate(
        self,
        zone: dns.name.Name | str,
        algorithm: Algorithm = Algorithm.ECDSAP256SHA256,
        *,
        now: datetime | None = None,
    ) -> StoredSig0Key:
        """A new key for ``zone``, written as ``.private`` and ``.key`` (both 0600). Its
        tag differs from every other key of the zone here (the parent tells keys apart
        by tag, so the child must not reuse one)."""
        if algorithm not in SIG0_ALGORITHMS:
            raise self.error(
                f"algorithm {Algorithm(algorithm).name} is not supported for SIG(0); use one "
                "of " + ", ".join(a.name for a in SIG0_ALGORITHMS))
        owner = _name(zone)
        taken = {k.key_tag for k in self.list_keys(owner)}
        while True:
            key = Sig0Key.generate(owner, algorithm)
            if key.key_tag not in taken:
                break
        created = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
        base = f"K{owner.to_text()}+{int(algorithm):03d}+{key.key_tag:05d}"
        rdata = key.key_rdata()
        stamp = created.strftime(_CREATED)
        write_private_file(self.directory / f"{base}.key",
                           f"{owner.to_text()} IN KEY {rdata.to_text()}\n".encode(), self.error)
        write_private_file(self.directory / f"{base}.private",
                           bind_private_text(algorithm, key.private, stamp).encode(), self.error)
        return StoredSig0Key(base, owner, rdata, created)

    def retire(self, key_id: str) -> bool:
        """Move key ``key_id``'s files to ``retired/`` (made 0700 if missing): the key is
        no longer listed, published or used, and its files are kept. False when the store
        does not hold it (already retired: a re-run after a crash is harmless)."""
        private = self.directory / f"{key_id}.private"
        if "/" in key_id or not _FILE.match(private.name) or not private.is_file():
            return False
        retired = self.directory / RETIRED
        if not retired.exists():
            create_private_directory(retired, self.error)
        check_private_directory(retired, self.error)
        for suffix in (".key", ".private"):  # the .private last: it is what lists a key
            path = self.directory / f"{key_id}{suffix}"
            if path.exists():
                if (retired / path.name).exists():
                    raise self.error(f"{retired / path.name} already exists; move it away "
                                     f"before retiring {key_id}")
                path.rename(retired / path.name)
        return True


def _name(zone: dns.name.Name | str) -> dns.name.Name:
    name = dns.name.from_text(zone) if isinstance(zone, str) else zone
    return name.canonicalize()
