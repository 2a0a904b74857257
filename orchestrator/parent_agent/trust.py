"""The children's SIG(0) keys the agent knows, and what it thinks of each: trusted,
bootstrapping or refused. Kept in ``<key_directory>/trusted-keys.json`` (0600, written
atomically) so trust survives a restart; without a key directory, in memory only. Every
change of trust is also in the history (kind "bootstrap"), which is where an auditor
looks: the file is the agent's working copy."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.KEY import KEY

from core.errors import ConfigError
from core.sig0 import key_tag_of
from orchestrator.decide.cds_consistency import texts

State = Literal["trusted", "bootstrapping", "refused"]
FILE = "trusted-keys.json"


def canonical(key: KEY) -> str:
    """The one-token text a KEY is stored and compared as."""
    return texts(dns.rrset.from_rdata_list(dns.name.root, 0, [key]))[0]


def parse_key(text: str) -> KEY:
    rd = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.KEY, text)
    assert isinstance(rd, KEY)
    return rd


@dataclass
class KeyRecord:
    key: str  # canonical KEY text
    state: State
    method: str = ""
    reason: str = ""

    @property
    def tag(self) -> int:
        return key_tag_of(parse_key(self.key))


class TrustStore:
    def __init__(self, directory: Path | None) -> None:
        self._path = directory / FILE if directory is not None else None
        self._keys: dict[str, list[KeyRecord]] = {}
        if self._path is not None and self._path.exists():
            self._load(self._path)

    def _load(self, path: Path) -> None:
        try:
            raw = json.loads(path.read_text())
            # A bootstrap cut short by a stop or crash has no checks running any more:
            # forget it, so KeyState says "unknown" and the child asks again.
            self._keys = {child: [KeyRecord(**r) for r in records
                                  if r.get("state") != "bootstrapping"]
                          for child, records in raw.items()}
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"{path}: cannot read the agent's trusted keys ({exc}); "
                              "restore it from a backup or remove it (children then "
                              "bootstrap their keys again)") from None

    def _save(self) -> None:
        if self._path is None:
            return
        data = {child: [asdict(r) for r in records] for child, records in self._keys.items()}
        fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=".trusted-keys.")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self._path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def find(self, child: str, tag: int) -> list[KeyRecord]:
        return [r for r in self._keys.get(child.lower(), []) if r.tag == tag]

    def get(self, child: str, key: str) -> KeyRecord | None:
        return next((r for r in self._keys.get(child.lower(), []) if r.key == key), None)

    def trusted(self, child: str) -> list[KEY]:
        return [parse_key(r.key) for r in self._keys.get(child.lower(), [])
                if r.state == "trusted"]

    def set(self, child: str, key: str, state: State, method: str = "", reason: str = ""
            ) -> None:
        records = self._keys.setdefault(child.lower(), [])
        records[:] = [r for r in records if r.key != key]
        records.append(KeyRecord(key, state, method, reason))
        self._save()

    def remove(self, child: str, key: str) -> None:
        records = self._keys.get(child.lower(), [])
        records[:] = [r for r in records if r.key != key]
        self._save()
