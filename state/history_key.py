"""The secret that authenticates the history (``[history] key`` / ``key_file``).

A plain hash chain only shows accidental change: whoever can write the history table can
edit an entry and recompute every hash after it. With a key, every entry also carries
``mac = HMAC-SHA256(key, "multisigner-history-entry" NUL hash)``; since each hash covers
the previous one, an entry's MAC vouches for the whole chain up to it. Exported
checkpoints (entry count + head hash + time) are authenticated with the same key under
another label, so an entry MAC can never be passed off as a checkpoint MAC or vice versa.

The key is held in memory only: never written to the database, never shown. Its public
``key_id`` (an HMAC of a fixed label, so it reveals nothing about the key) lets a
checkpoint say which key made it, so "made with another key" is told apart from "altered".
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from pathlib import Path

from core.errors import ConfigError

# Shorter keys are refused: the MAC is only as strong as the key is hard to guess.
MIN_KEY_BYTES = 32
_HINT = "generate one with: openssl rand -hex 32"
_ENTRY_LABEL = b"multisigner-history-entry\x00"
_CHECKPOINT_LABEL = b"multisigner-history-checkpoint\x00"
_KEY_ID_LABEL = b"multisigner-history-key-id"


class HistoryKey:
    """A loaded history key. ``repr`` and ``str`` never contain the secret."""

    __slots__ = ("_secret", "key_id")

    def __init__(self, secret: bytes, where: str = "history.key") -> None:
        if len(secret) < MIN_KEY_BYTES:
            raise ConfigError(
                f"{where}: the key is {len(secret)} bytes; use at least {MIN_KEY_BYTES} "
                f"({_HINT})"
            )
        self._secret = secret
        self.key_id = hmac.new(secret, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"HistoryKey(key_id={self.key_id!r})"

    __str__ = __repr__

    def entry_mac(self, entry_hash: str) -> str:
        return hmac.new(self._secret, _ENTRY_LABEL + entry_hash.encode("ascii"),
                        hashlib.sha256).hexdigest()

    def entry_mac_ok(self, entry_hash: str, mac: str) -> bool:
        return hmac.compare_digest(self.entry_mac(entry_hash), mac)

    def checkpoint_mac(self, body: str) -> str:
        return hmac.new(self._secret, _CHECKPOINT_LABEL + body.encode("utf-8"),
                        hashlib.sha256).hexdigest()

    def checkpoint_mac_ok(self, body: str, mac: str) -> bool:
        return hmac.compare_digest(self.checkpoint_mac(body), mac)


def _read_key_file(path: Path, where: str) -> bytes:
    """The key file's content without surrounding whitespace; refuse a file others can
    access (anyone who can read it can forge history). Checked on the open descriptor, so
    the file checked is the file read."""
    try:
        with path.open("rb") as handle:
            st = os.fstat(handle.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise ConfigError(f"{where}: {path} is not a regular file")
            if st.st_mode & 0o077:
                raise ConfigError(
                    f"{where}: {path} is accessible by group or others (mode "
                    f"{stat.S_IMODE(st.st_mode):04o}); whoever can read it can forge the "
                    f"history: chmod 600 {path}"
                )
            return handle.read().strip()
    except FileNotFoundError:
        raise ConfigError(f"{where}: {path} does not exist; create it ({_HINT} > {path}; "
                          f"chmod 600 {path})") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path}: {exc.strerror}") from None


def load_history_key(key: str | None, key_file: Path | None, *,
                     config_path: Path | str | None = None) -> HistoryKey | None:
    """The key configured by ``[history]`` (None when the table is absent).

    Errors are ConfigError naming the config file and ``history.key`` / ``history.key_file``
    (the CLI exits 2), never the secret.
    """
    prefix = f"{config_path}: " if config_path is not None else ""
    if key is not None and key_file is not None:
        raise ConfigError(f"{prefix}history: set key or key_file, not both")
    if key is not None:
        return HistoryKey(key.strip().encode("utf-8"), f"{prefix}history.key")
    if key_file is not None:
        where = f"{prefix}history.key_file"
        path = Path(os.path.expanduser(key_file))
        return HistoryKey(_read_key_file(path, where), where)
    return None
