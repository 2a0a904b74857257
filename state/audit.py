"""The tamper-evident history: one global hash chain over every zone's transitions.

Each entry stores ``hash = sha256(prev_hash + canonical_json(content))`` where content is
every field shown by ``history --json`` except the hash itself (seq, zone, process_id,
kind, from_state, to_state, at, actor, reason, evidence), and ``prev_hash`` is the hash of
the entry before it (64 zeros for the first). Because the chain spans all zones and
``seq`` is dense (1, 2, 3, ... with no gaps by construction), editing, deleting, inserting
or reordering any entry is detected; only truncating the newest entries is not, as with
any hash chain that is not anchored elsewhere.

With a ``[history]`` key (state/history_key.py) every new entry also carries a MAC of its
hash, which an attacker with write access to the database but not the key cannot forge:
an edited, inserted or reordered entry, and every entry after it, no longer verifies even
if all hashes are recomputed. Entries written before the key was configured have no MAC;
they may only form a prefix of the chain (``audit seal`` authenticates them once the
operator has checked them), so a missing MAC after an authenticated entry, or a history
without any MAC although a key is configured, is reported as tampering. Truncating the
newest entries is caught only against a checkpoint exported earlier (state/checkpoint.py).

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

from core.errors import AuditError, StateError
from state.canonical import canonical_json, dumps_dict, loads_dict, rfc3339, sha256_hex, utc
from state.history_key import HistoryKey
from state.models import ZERO_HASH, HistoryEntry

# The kind of the entry ``audit seal`` writes; verify checks what it vouches for.
SEAL_KIND = "history-seal"


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
    mac: str | None = None

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
            mac=row.mac,
        )


@dataclass(frozen=True)
class ChainReport:
    """The outcome of walking the chain. ``authenticated`` counts entries carrying a MAC
    (checked only when ``keyed``); ``unauthenticated`` the entries without one, which in a
    good chain are a prefix ending before ``first_authenticated``."""

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str | None = None
    keyed: bool = False
    authenticated: int = 0
    unauthenticated: int = 0
    first_authenticated: int | None = None
    head_hash: str = ZERO_HASH

    def raise_if_bad(self) -> None:
        """Raise AuditError naming the first bad entry (for ``audit verify``)."""
        if not self.ok:
            if self.first_bad_seq is None:
                raise AuditError(f"history: {self.problem}")
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
    key: HistoryKey | None = None,
    lease: Mapping[str, Any] | None = None,
) -> HistoryInfo:
    """Add the next link of the chain, with its MAC when *key* is given, and the lease the
    write was made under (state/leases.py: fencing tokens) in its evidence. Call only
    inside ``Database.write()``."""
    if lease is not None:
        evidence = {**(evidence or {}), "lease": dict(lease)}
    evidence_text = dumps_dict(evidence, "history evidence")
    last = session.exec(
        select(HistoryEntry).order_by(col(HistoryEntry.seq).desc()).limit(1)
    ).first()
    if last is not None:
        _check_writer_key(last, key)
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
    row.mac = key.entry_mac(row.hash) if key is not None else None
    session.add(row)
    session.flush()
    return HistoryInfo.from_row(row)


def _check_writer_key(last: HistoryEntry, key: HistoryKey | None) -> None:
    """Refuse to extend an authenticated history with an entry it could not verify later:
    one without a MAC (a controller missing the key) or with a MAC under another key. Such
    an entry would make the whole history fail ``audit verify`` from then on."""
    if last.mac is None:
        return
    if key is None:
        raise StateError(
            "the history is authenticated ([history] key) but this controller has no "
            "[history] key configured; give every controller that shares the state "
            "database the same key, then retry"
        )
    if not key.entry_mac_ok(last.hash, last.mac):
        raise StateError(
            f"the newest history entry (seq {last.seq}) does not verify with the configured "
            f"[history] key (key id {key.key_id}): the key differs from the one the history "
            "was written with, or the entry was altered; run 'multisigner audit verify'"
        )


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


class _Walk:
    """Authentication state while walking the chain in seq order."""

    def __init__(self, key: HistoryKey | None) -> None:
        self.key = key
        self.authenticated = 0
        self.unauthenticated = 0
        self.first_authenticated: int | None = None
        self.first_unauthenticated: int | None = None

    def problem(self, row: HistoryEntry) -> tuple[int, str] | None:
        """(bad seq, what is wrong) for *row*'s MAC, or None."""
        if row.mac is None:
            if self.first_authenticated is not None:
                return row.seq, (
                    f"has no MAC although entry {self.first_authenticated} before it is "
                    "authenticated (its MAC was removed, or a controller without the "
                    "[history] key wrote it)"
                )
            self.unauthenticated += 1
            self.first_unauthenticated = self.first_unauthenticated or row.seq
            return None
        if self.key is not None and not self.key.entry_mac_ok(row.hash, row.mac):
            return row.seq, (
                f"MAC does not verify with the configured [history] key (key id "
                f"{self.key.key_id}): the entry, or one before it, was rewritten and the "
                "chain recomputed, or the history was written with another key"
            )
        self.authenticated += 1
        self.first_authenticated = self.first_authenticated or row.seq
        if row.kind == SEAL_KIND and self.first_unauthenticated is not None:
            return self.first_unauthenticated, (
                f"has no MAC although the seal at entry {row.seq} authenticated every entry "
                "before it (its MAC was removed)"
            )
        return None


def verify(session: Session, key: HistoryKey | None = None) -> ChainReport:
    """Walk the whole chain in seq order; stop at the first entry that does not verify.

    With *key*, MACs are checked too, and a non-empty history without a single MAC is
    refused: stripping every MAC is the one way to rewrite it without the key.
    """
    rows = session.exec(
        select(HistoryEntry).order_by(col(HistoryEntry.seq)).execution_options(yield_per=500)
    )
    walk = _Walk(key)
    checked = 0
    prev_seq = 0
    prev_hash = ZERO_HASH

    def report(ok: bool, bad: int | None = None, problem: str | None = None) -> ChainReport:
        return ChainReport(
            ok=ok, checked=checked, first_bad_seq=bad, problem=problem, keyed=key is not None,
            authenticated=walk.authenticated, unauthenticated=walk.unauthenticated,
            first_authenticated=walk.first_authenticated, head_hash=prev_hash,
        )

    for row in rows:
        checked += 1
        problem = _problem(row, prev_seq, prev_hash)
        if problem is not None:
            return report(False, row.seq, problem)
        bad = walk.problem(row)
        if bad is not None:
            return report(False, *bad)
        prev_seq, prev_hash = row.seq, row.hash
        session.expunge(row)  # keep memory flat on long histories
    if key is not None and checked and walk.first_authenticated is None:
        return report(False, None, (
            f"none of the {checked} entries is authenticated although a [history] key is "
            "configured: either the key was added since the last entry was written (check "
            "the history, then run 'multisigner audit seal'), or every MAC was removed"
        ))
    return report(True)
