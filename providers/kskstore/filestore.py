"""KSKs as private-key files in one directory that only the owner can enter.

Files this store reads (anything else, and dot files, are ignored):

- ``*.pem`` — unencrypted PKCS#8 PEM, what :meth:`FileKskStore.generate` writes
  (``ksk-<UTC time>-<tag>.pem``, mode 0600, temp file + ``os.replace``);
- ``K<zone>+<alg>+<tag>.private`` — BIND's Private-key-format v1.x (``dnssec-keygen``),
  for owners moving an existing KSK over; its ``.key`` companion, when present, must
  hold the same public key.

The key id is the file name without its extension. The directory (0700) and every key
file (0600) must not be accessible to group or others: the store refuses to open, and
says which ``chmod`` fixes it, rather than use a key others may have copied.

A missing directory is an error, never created on the fly: a typo or an unmounted volume
would otherwise look like an empty store, and an empty store next to a signed zone is how
a zone loses the KSK its parent's DS names. Only ``multisigner ksk init`` asks for it to be
made (``create=True``), and then only the last path component, mode 0700.
"""

from __future__ import annotations

import base64
import contextlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519
from dns.dnssecalgs import get_algorithm_cls
from dns.dnssectypes import Algorithm

from core.algorithms import ECDSA_PARAMS, SIGNING_ALGORITHMS
from core.keys import Key
from providers.kskstore.base import (
    KskStore,
    StoredKey,
    StoreSigner,
    algorithm_of,
    describe_key_type,
    dnskey_of,
)
from providers.private_files import (
    check_private_directory,
    check_private_file,
    create_private_directory,
    private_from_bind,
    read_bind_fields,
    write_private_file,
)

_BIND_NAME = re.compile(r"^K(?P<zone>.+)\+(?P<alg>\d{3})\+(?P<tag>\d{5})\.private$")
_OWN_NAME = re.compile(r"^ksk-(?P<time>\d{8}T\d{6}Z)-\d{5}$")
_TIME = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class _KeyFile:
    path: Path
    private: Any  # a cryptography private key
    stored: StoredKey


def _with_flags(key: Key, flags: int) -> Key:
    return Key(f"{flags} {key.text.split(' ', 1)[1]}")


class FileKskStore(KskStore):
    """Owner KSKs as files in ``directory``; with ``create``, the directory is made (0700,
    its parent must exist) when missing."""

    def __init__(
        self,
        directory: Path | str,
        algorithm: Algorithm | int = Algorithm.ECDSAP256SHA256,
        *,
        expect_dnskey: Iterable[Key | str] = (),
        create: bool = False,
    ) -> None:
        self.directory = Path(directory)
        self.name = f"file {self.directory}"
        self.algorithm = Algorithm(algorithm)
        if self.algorithm not in SIGNING_ALGORITHMS:
            raise self.error(
                f"algorithm {self.algorithm.name} is not supported; use one of "
                + ", ".join(a.name for a in SIGNING_ALGORITHMS)
            )
        self.expected = [k if isinstance(k, Key) else Key.parse(k) for k in expect_dnskey]
        if not self.directory.exists():
            if not create:
                self._missing()
            self._create()
        self._check_directory()
        self._scan()  # every file readable and of the right algorithm, expected keys there

    def _missing(self) -> NoReturn:
        raise self.error(
            f"the key directory {self.directory} does not exist: check [zones.owner_ksk] "
            "directory (a typo? a volume not mounted?). A zone that is already signed needs "
            "the directory holding its KSK; for a new zone, 'multisigner ksk init ZONE' "
            "creates the directory and the first KSK"
        )

    def _create(self) -> None:
        create_private_directory(self.directory, self.error)

    # -- checks -------------------------------------------------------------------------

    def _check_directory(self) -> None:
        check_private_directory(self.directory, self.error)

    def _check_file(self, path: Path) -> None:
        check_private_file(path, self.error)

    # -- reading ------------------------------------------------------------------------

    def _scan(self) -> dict[str, _KeyFile]:
        self._check_directory()
        found: dict[str, _KeyFile] = {}
        for path in sorted(self.directory.iterdir()):
            if path.name.startswith(".") or not path.is_file():
                continue
            if path.suffix == ".pem":
                key_file = self._read_pem(path)
            elif _BIND_NAME.match(path.name):
                key_file = self._read_bind(path)
            else:
                continue
            if key_file.stored.key_id in found:
                raise self.error(
                    f"{path} and {found[key_file.stored.key_id].path} have the same key id "
                    f"{key_file.stored.key_id!r}; move one of them out of the directory"
                )
            found[key_file.stored.key_id] = key_file
        self._check_expected(found)
        return found

    def _check_expected(self, found: dict[str, _KeyFile]) -> None:
        have = {kf.stored.dnskey: kf for kf in found.values()}
        for expected in self.expected:
            # Compare key material: the expected form may carry flags 256 (a BIND ZSK file).
            wanted = _with_flags(expected, 257)
            if wanted in have:
                continue
            listing = ", ".join(
                f"{kf.path.name} → tag {kf.stored.key_tag}" for kf in found.values()
            )
            raise self.error(
                f"the expected DNSKEY {expected.short()} ({expected.text}) is not in any key "
                f"file here (found: {listing or 'no key files'}); copy the right key file "
                "into the directory or correct owner_ksk.expect_dnskey"
            )

    def _load_checked(self, path: Path, private: Any, created: datetime | None) -> _KeyFile:
        found = algorithm_of(private)
        if found != self.algorithm:
            raise self.error(
                f"{path} holds a {describe_key_type(private)} key, but this store is "
                f"configured for {self.algorithm.name} (owner_ksk.algorithm); move the file "
                "out of the directory or change the algorithm"
            )
        dnskey = dnskey_of(private.public_key(), self.algorithm)
        stored = StoredKey(key_id=path.name.rsplit(".", 1)[0], dnskey=dnskey, created=created)
        return _KeyFile(path=path, private=private, stored=stored)

    def _read_pem(self, path: Path) -> _KeyFile:
        self._check_file(path)
        try:
            private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except TypeError:
            raise self.error(
                f"{path} is an encrypted PEM key; this store reads unencrypted PKCS#8 in a "
                "0700 directory (`openssl pkey -in FILE -out FILE.new`), or use store = "
                "'pkcs11' for a key that must stay encrypted"
            ) from None
        except (ValueError, OSError) as exc:
            raise self.error(f"{path} is not a readable PEM private key ({exc})") from None
        match = _OWN_NAME.match(path.stem)
        created = (
            datetime.strptime(match["time"], _TIME).replace(tzinfo=UTC)
            if match
            else datetime.fromtimestamp(path.stat().st_mtime, UTC)
        )
        return self._load_checked(path, private, created)

    def _read_bind(self, path: Path) -> _KeyFile:
        self._check_file(path)
        try:
            fields = self._bind_fields(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise self.error(f"cannot read {path}: {exc}") from None
        if not fields.get("Private-key-format", "").startswith("v1."):
            raise self.error(
                f"{path} is not a BIND private key file (no 'Private-key-format: v1.x' line)"
            )
        try:
            number = int(fields.get("Algorithm", "").split()[0])
        except (ValueError, IndexError):
            raise self.error(f"{path} has no valid 'Algorithm:' line") from None
        if number != self.algorithm:
            name = Algorithm.to_text(Algorithm.make(number))
            raise self.error(
                f"{path} is an algorithm {number} ({name}) key, but this store is configured "
                f"for {self.algorithm.name} (owner_ksk.algorithm); move the file out of the "
                "directory or change the algorithm"
            )
        try:
            secret = base64.b64decode(fields["PrivateKey"], validate=True)
            private = self._private_from_bind(secret)
        except (KeyError, ValueError) as exc:
            raise self.error(f"{path} has no usable 'PrivateKey:' field ({exc})") from None
        created = None
        if "Created" in fields:
            with contextlib.suppress(ValueError):
                created = datetime.strptime(fields["Created"][:14], "%Y%m%d%H%M%S").replace(
                    tzinfo=UTC
                )
        key_file = self._load_checked(path, private, created)
        self._check_bind_companion(path, key_file)
        return key_file

    @staticmethod
    def _bind_fields(path: Path) -> dict[str, str]:
        return read_bind_fields(path)

    def _private_from_bind(self, secret: bytes) -> Any:
        return private_from_bind(self.algorithm, secret)

    def _new_private(self) -> Any:
        if self.algorithm in ECDSA_PARAMS:
            return ec.generate_private_key(ECDSA_PARAMS[self.algorithm][0]())
        if self.algorithm == Algorithm.ED25519:
            return ed25519.Ed25519PrivateKey.generate()
        return ed448.Ed448PrivateKey.generate()

    def _check_bind_companion(self, path: Path, key_file: _KeyFile) -> None:
        match = _BIND_NAME.match(path.name)
        assert match is not None
        tag = int(match["tag"])
        companion = path.with_suffix(".key")
        public: Key | None = None
        if companion.exists():
            for line in companion.read_text().splitlines():
                if line.startswith(";") or "DNSKEY" not in line:
                    continue
                try:
                    public = Key.parse(line.split("DNSKEY", 1)[1])
                except Exception as exc:
                    raise self.error(f"{companion} has an unreadable DNSKEY ({exc})") from None
        ours = key_file.stored.dnskey
        if public is not None:
            same = public.rdata.key == ours.rdata.key and public.algorithm == ours.algorithm
            if not same:
                raise self.error(
                    f"{path} and {companion} do not belong together: the private key's "
                    f"DNSKEY has tag {ours.key_tag}, the .key file holds tag {public.key_tag}; "
                    "copy the matching pair"
                )
        tags = {ours.key_tag, _with_flags(ours, 256).key_tag}
        if tag not in tags:
            raise self.error(
                f"{path}: the file name says key tag {tag}, but the key in it has tag "
                f"{ours.key_tag}; the file was renamed or altered"
            )

    # -- the KskStore interface ---------------------------------------------------------

    def list_keys(self) -> list[StoredKey]:
        keys = [kf.stored for kf in self._scan().values()]
        return sorted(keys, key=lambda k: k.created or datetime.min.replace(tzinfo=UTC))

    def generate(self) -> StoredKey:
        self._check_directory()
        private = self._new_private()
        dnskey = dnskey_of(private.public_key(), self.algorithm)
        now = datetime.now(UTC).replace(microsecond=0)
        path = self.directory / f"ksk-{now.strftime(_TIME)}-{dnskey.key_tag:05d}.pem"
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self._write_new(path, pem)
        return StoredKey(key_id=path.stem, dnskey=dnskey, created=now)

    def _write_new(self, path: Path, data: bytes) -> None:
        write_private_file(path, data, self.error)

    def signer(self, key_id: str) -> StoreSigner:
        found = self._scan()
        if key_id not in found:
            have = ", ".join(f"{k} (tag {v.stored.key_tag})" for k, v in found.items())
            raise self.error(f"no key file for key id {key_id!r}; found: {have or 'none'}")
        key_file = found[key_id]
        private = get_algorithm_cls(self.algorithm)(key=key_file.private)

        def raw_sign(data: bytes, deterministic: bool) -> bytes:
            return private.sign(data, verify=False, deterministic=deterministic)

        return StoreSigner(key_file.stored, raw_sign=raw_sign, store=self.name)

    def close(self) -> None:
        pass
