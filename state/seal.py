"""``audit seal``: authenticate the entries written before a ``[history]`` key existed.

Those entries have no MAC, so their content rests only on the plain hash chain, which
anyone with write access to the database could have recomputed. Sealing is therefore an
operator's statement: "I checked this history; from now on, vouch for it". It adds the
missing MACs and records the act in the history itself (kind ``history-seal``, with the
number of entries sealed and the hash they ended at), authenticated like every new entry;
``audit verify`` then refuses any entry before a seal that lost its MAC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from state.audit import SEAL_KIND, HistoryInfo, append_entry, verify
from state.history_key import HistoryKey
from state.models import HistoryEntry


@dataclass(frozen=True)
class SealResult:
    sealed: int  # entries that received a MAC
    through: int  # seq of the last of them
    entry: HistoryInfo  # the history-seal entry recording it


def seal(session: Session, key: HistoryKey, *, actor: str, reason: str,
         at: datetime) -> SealResult | None:
    """Add MACs to the unauthenticated prefix and record it; None if there is none.

    Refused (AuditError) unless the chain verifies: a seal must never vouch for a history
    already known to be broken. Call inside ``Database.write()``.
    """
    report = verify(session, key)
    # The one failure sealing is meant to clear: entries exist but none carries a MAC.
    if not report.ok and report.first_bad_seq is not None:
        report.raise_if_bad()
    if report.unauthenticated == 0:
        return None
    rows = session.exec(
        select(HistoryEntry).where(col(HistoryEntry.mac).is_(None))
        .order_by(col(HistoryEntry.seq))
    ).all()
    for row in rows:
        row.mac = key.entry_mac(row.hash)
    last = rows[-1]
    session.flush()
    entry = append_entry(
        session,
        zone="",
        process_id=None,
        kind=SEAL_KIND,
        from_state=None,
        to_state="sealed",
        actor=actor,
        reason=reason,
        evidence={"sealed_entries": len(rows), "sealed_through": last.seq,
                  "sealed_head_hash": last.hash, "key_id": key.key_id},
        at=at,
        key=key,
    )
    return SealResult(sealed=len(rows), through=last.seq, entry=entry)
