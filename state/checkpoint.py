"""Exported checkpoints of the history head, like Certificate Transparency's signed tree
heads: ``{entries, head_hash, time, key_id, mac}`` where the MAC (state/history_key.py)
covers every other field in canonical JSON.

The database alone cannot show that its newest entries were deleted: what is left is a
valid, authenticated chain. A checkpoint kept elsewhere (another host, a ticket, a log
archive) can: a history with fewer entries than the checkpoint was truncated, and one whose
entry at the checkpoint's position has another hash was rewritten. Entries appended after
the checkpoint are expected and fine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session

from core.errors import AuditError, UsageError
from state.canonical import canonical_json, rfc3339
from state.history_key import HistoryKey
from state.models import HistoryEntry

FORMAT = "multisigner-history-checkpoint/1"
_FIELDS = ("format", "entries", "head_hash", "time", "key_id", "mac")


@dataclass(frozen=True)
class Checkpoint:
    entries: int
    head_hash: str
    time: str  # RFC 3339, as signed
    key_id: str
    mac: str

    def body(self) -> dict[str, Any]:
        """The authenticated fields (everything but the MAC)."""
        return {"format": FORMAT, "entries": self.entries, "head_hash": self.head_hash,
                "time": self.time, "key_id": self.key_id}

    def as_json(self) -> dict[str, Any]:
        return {**self.body(), "mac": self.mac}


def make_checkpoint(entries: int, head_hash: str, at: datetime, key: HistoryKey) -> Checkpoint:
    unsigned = Checkpoint(entries, head_hash, rfc3339(at), key.key_id, "")
    mac = key.checkpoint_mac(canonical_json(unsigned.body()))
    return Checkpoint(entries, head_hash, unsigned.time, key.key_id, mac)


def parse_checkpoint(text: str, source: str) -> Checkpoint:
    """A checkpoint from its JSON text; UsageError (exit 2) naming *source* if malformed."""
    def bad(why: str) -> UsageError:
        return UsageError(f"checkpoint {source}: {why}; give a file written by "
                          "'multisigner audit checkpoint'")

    try:
        data = json.loads(text)
    except ValueError as exc:
        raise bad(f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise bad("not a JSON object")
    if data.get("format") != FORMAT:
        raise bad(f"format is {data.get('format')!r}, expected {FORMAT!r}")
    missing = [name for name in _FIELDS if name not in data]
    extra = sorted(set(data) - set(_FIELDS))
    if missing or extra:
        raise bad(f"missing {missing}" if missing else f"unknown fields {extra}")
    entries = data["entries"]
    if not isinstance(entries, int) or isinstance(entries, bool) or entries < 0:
        raise bad(f"entries must be a count, not {entries!r}")
    texts = [data[name] for name in ("head_hash", "time", "key_id", "mac")]
    if not all(isinstance(value, str) for value in texts):
        raise bad("head_hash, time, key_id and mac must be strings")
    return Checkpoint(entries, *texts)


def authenticate(checkpoint: Checkpoint, key: HistoryKey, source: str) -> None:
    """Refuse (AuditError, exit 1) a checkpoint made with another key, or altered."""
    if checkpoint.key_id != key.key_id:
        raise AuditError(
            f"checkpoint {source} was made with another [history] key (key id "
            f"{checkpoint.key_id}; the configured key has id {key.key_id}); verify it with "
            "the key it was made with"
        )
    if not key.checkpoint_mac_ok(canonical_json(checkpoint.body()), checkpoint.mac):
        raise AuditError(
            f"checkpoint {source}: its MAC does not verify: the file was altered after "
            "it was exported; it proves nothing about the history"
        )


def compare(session: Session, checkpoint: Checkpoint, entries: int) -> tuple[int, str] | None:
    """(first bad seq, problem) if the history (*entries* long, its chain already verified)
    is not an extension of the checkpointed one, else None."""
    if entries < checkpoint.entries:
        first = entries + 1
        gone = (f"entry {first}" if first == checkpoint.entries
                else f"entries {first}..{checkpoint.entries}")
        return first, (
            f"the history has {entries} entries but the checkpoint of {checkpoint.time} "
            f"saw {checkpoint.entries}: {gone} were deleted (truncated)"
        )
    if checkpoint.entries == 0:
        return None
    row = session.get(HistoryEntry, checkpoint.entries)
    if row is None or row.hash != checkpoint.head_hash:
        return checkpoint.entries, (
            f"hash differs from the checkpoint of {checkpoint.time} (history "
            f"{row.hash if row else 'none'}, checkpoint {checkpoint.head_hash}): the history "
            "up to this entry was rewritten"
        )
    return None
