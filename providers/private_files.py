"""Private keys as files in a directory only the owner can enter: the checks and the
atomic write that the owner-KSK file store (``providers/kskstore/filestore.py``) and the
SIG(0) key store (``providers/sig0keys.py``) share, and BIND's Private-key-format v1.x.

A directory (0700) or key file (0600) that group or others can access is refused with the
``chmod`` that fixes it: a key others may have copied is not used. Every function takes an
``error`` factory so each store raises its own exception type with its own prefix.
"""

from __future__ import annotations

import base64
import contextlib
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519
from dns.dnssectypes import Algorithm

from core.algorithms import ECDSA_PARAMS

ErrorFactory = Callable[[str], Exception]


def mode_text(st: os.stat_result) -> str:
    return f"{stat.S_IMODE(st.st_mode):04o}"


def create_private_directory(directory: Path, error: ErrorFactory) -> None:
    """Make ``directory`` (mode 0700); its parent must exist (a wrong path fails here)."""
    try:
        directory.mkdir(mode=0o700)
        directory.chmod(0o700)  # mkdir's mode is masked by the umask
    except FileNotFoundError:
        raise error(
            f"cannot create the key directory: its parent {directory.parent} does "
            "not exist (check the path; create the parent yourself if it is right)"
        ) from None
    except OSError as exc:
        raise error(f"cannot create the key directory: {exc}") from None


def check_private_directory(directory: Path, error: ErrorFactory) -> None:
    try:
        st = directory.stat()
    except OSError as exc:
        raise error(f"cannot use the key directory: {exc}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise error(f"{directory} is not a directory")
    if st.st_mode & 0o077:
        raise error(
            f"the key directory {directory} is accessible by group or others "
            f"(mode {mode_text(st)}); private keys need a private directory: "
            f"run `chmod 700 {directory}`"
        )


def check_private_file(path: Path, error: ErrorFactory) -> None:
    st = path.stat()
    if st.st_mode & 0o077:
        raise error(
            f"the private key file {path} is readable or writable by group or others "
            f"(mode {mode_text(st)}); check that nobody copied it, then run `chmod 600 {path}`"
        )


def write_private_file(path: Path, data: bytes, error: ErrorFactory) -> None:
    """Write ``path`` (0600) all at once: a reader sees no file or the whole key."""
    if path.exists():
        raise error(f"{path} already exists; not overwriting a key")
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise error(f"cannot write {path}: {exc}") from None
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# -- BIND's Private-key-format v1.x (dnssec-keygen) ----------------------------------------


def read_bind_fields(path: Path) -> dict[str, str]:
    """``Name: value`` lines of a BIND private key file (comments skipped)."""
    fields: dict[str, str] = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.partition(":")
        if sep and not line.startswith(";"):
            fields[name.strip()] = value.strip()
    return fields


def private_from_bind(algorithm: Algorithm, secret: bytes) -> Any:
    """The cryptography private key of a ``PrivateKey:`` field (ECDSA, Ed25519, Ed448);
    ValueError when the octets do not fit the algorithm."""
    if algorithm in ECDSA_PARAMS:
        curve, _, octets = ECDSA_PARAMS[algorithm]
        if len(secret) != octets:
            raise ValueError(f"{len(secret)} bytes, expected {octets}")
        return ec.derive_private_key(int.from_bytes(secret, "big"), curve())
    if algorithm == Algorithm.ED25519:
        return ed25519.Ed25519PrivateKey.from_private_bytes(secret)
    if algorithm == Algorithm.ED448:
        return ed448.Ed448PrivateKey.from_private_bytes(secret)
    raise ValueError(f"algorithm {Algorithm.to_text(algorithm)} is not read from BIND files")


def bind_private_text(algorithm: Algorithm, private: Any, created: str) -> str:
    """A Private-key-format v1.3 file for ``private`` (what ``dnssec-keygen`` writes for
    ECDSA and EdDSA keys); ``created`` is ``YYYYMMDDHHMMSS`` UTC."""
    if isinstance(private, ec.EllipticCurvePrivateKey):
        octets = ECDSA_PARAMS[algorithm][2]
        secret = private.private_numbers().private_value.to_bytes(octets, "big")
    else:
        secret = private.private_bytes(serialization.Encoding.Raw,
                                       serialization.PrivateFormat.Raw,
                                       serialization.NoEncryption())
    return (
        "Private-key-format: v1.3\n"
        f"Algorithm: {int(algorithm)} ({Algorithm.to_text(algorithm)})\n"
        f"PrivateKey: {base64.b64encode(secret).decode()}\n"
        f"Created: {created}\nPublish: {created}\nActivate: {created}\n"
    )
