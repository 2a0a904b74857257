"""The tamper-evident history: one global hash chain over every zone's transitions.

Each entry stores ``hash = sha256(prev_hash + canonical_json(content))`` where content is
every field shown by ``history --json`` except the hash itself (seq, zone, process_id,
kind, from_state, to_state, at, actor, reason, evidence), and ``prev_hash`` is the hash of
the entry before it (64 zeros for the first). Because the chain spans all zones and
``seq`` is dense (1, 2, 3, ... with no gaps by construction), editing, deleting, inserting
or reordering any entry is detected; only truncating the newest entries is not, as with
any hash chain that is not anchored elsewhere.

``append_entry`` must run inside ``Database.write()``, whose lock guarantees that no two
writers read the same tail and fork the chain.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from core.errors import AuditError
from state.canonical import canonical_json, dumps_dict, loads_dict, rfc3339, sha256_hex, utc
from state.models import ZERO_HASH, HistoryEntry


@dataclass(frozen=True)
class HistoryInfo:
    seq: int
    zone: str
    process_id: str | None
    kind: str
    from_state: str | None
    to_state: str
    at: datetime
    actor: str
    reason: str
    evidence: dict[str, Any]
    prev_hash: str
    hash: str

    def as_json(self) -> dict[str, Any]:
        """Exactly the ``history --json`` item."""
        return {
            "seq": self.seq,
            "zone": self.zone,
            "process_id": self.process_id,
            "kind": self.kind,
            "from_state": self.from_state,
            "to_state": self.to_state,
            "at": rfc3339(self.at),
            "actor": self.actor,
            "reason": self.reason,
            "evidence": self.evidence,
            "hash": self.hash,
        }

    @classmethod
    def from_row(cls, row: HistoryEntry) -> HistoryInfo:
        return cls(
            seq=row.seq,
            zone=row.zone,
            process_id=row.process_id,
            kind=row.kind,
            from_state=row.from_state,
            to_state=row.to_state,
            at=row.at,
            actor=row.actor,
            reason=row.reason,
            evidence=loads_dict(row.evidence),
            prev_hash=row.prev_hash,
            hash=row.hash,
        )


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str | None = None

    def raise_if_bad(self) -> None:
        """Raise AuditError naming the first bad entry (for ``audit verify``)."""
        if not self.ok:
            raise AuditError(
                f"history entry seq {self.first_bad_seq}: {self.problem}; the history was "
                "altered after it was written: restore the state database from a backup "
                "and find out who had write access to it"
            )


def entry_hash(prev_hash: str, content: Mapping[str, Any]) -> str:
    return sha256_hex(prev_hash + canonical_json(dict(content)))


def _content(row: HistoryEntry, evidence: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "zone": row.zone,
        "process_id": row.process_id,
        "kind": row.kind,
        "from_state": row.from_state,
        "to_state": row.to_state,
        "at": rfc3339(row.at),
        "actor": row.actor,
        "reason": row.reason,
        "evidence": evidence,
    }


def append_entry(
    session: Session,
    *,
    zone: str,
    process_id: str | None,
    kind: str,
    from_state: str | None,
    to_state: str,
    actor: str,
    reason: str,
    evidence: Mapping[str, Any] | None,
    at: datetime,
) -> HistoryInfo:
    """Add the next link of the chain. Call only inside ``Database.write()``."""
    evidence_text = dumps_dict(evidence, "history evidence")
    last = session.exec(
        select(HistoryEntry).order_by(col(HistoryEntry.seq).desc()).limit(1)
    ).first()
    row = HistoryEntry(
        seq=last.seq + 1 if last is not None else 1,
        zone=zone,
        process_id=process_id,
        kind=kind,
        from_state=from_state,
        to_state=to_state,
        at=utc(at, "history time"),
        actor=actor,
        reason=reason,
        evidence=evidence_text,
        prev_hash=last.hash if last is not None else ZERO_HASH,
        hash="",
    )
    # Hash the evidence as it will read back (datetimes already turned into strings).
    row.hash = entry_hash(row.prev_hash, _content(row, json.loads(evidence_text)))
    session.add(row)
    session.flush()
    return HistoryInfo.from_row(row)


def _problem(row: HistoryEntry, prev_seq: int, prev_hash: str) -> str | None:
    """What is wrong with *row* given the entry before it, or None."""
    if row.seq != prev_seq + 1:
        missing = (
            f"entry {prev_seq + 1}"
            if row.seq == prev_seq + 2
            else f"entries {prev_seq + 1}..{row.seq - 1}"
        )
        return f"{missing} missing before it (deleted)"
    if row.prev_hash != prev_hash:
        where = f"entry {prev_seq}" if prev_seq else "the chain start (64 zeros)"
        return (
            f"prev_hash does not match the hash of {where} "
            "(an entry was deleted, inserted or reordered, or a hash was changed)"
        )
    try:
        evidence = loads_dict(row.evidence)
    except ValueError:
        return "evidence is not a JSON object (edited)"
    if entry_hash(row.prev_hash, _content(row, evidence)) != row.hash:
        return "content does not match its hash (the entry or its hash was edited)"
    return None


def verify(session: Session) -> ChainReport:
    """Walk the whole chain in seq order; stop at the first entry that does not verify."""
    rows = session.exec(
        select(HistoryEntry).order_by(col(HistoryEntry.seq)).execution_options(yield_per=500)
    )
    checked = 0
    prev_seq = 0
    prev_hash = ZERO_HASH
    for row in rows:
        checked += 1
        problem = _problem(row, prev_seq, prev_hash)
        if problem is not None:
            return ChainReport(ok=False, checked=checked, first_bad_seq=row.seq, problem=problem)
        prev_seq, prev_hash = row.seq, row.hash
        session.expunge(row)  # keep memory flat on long histories
    return ChainReport(ok=True, checked=checked)
