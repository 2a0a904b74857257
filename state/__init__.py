"""What multisigner remembers: observations, processes, the audited history, leases.

``StateStore.open(url)`` is the entry point; see ``state.store``.
"""

from state.audit import ChainReport, HistoryInfo
from state.canonical import canonical_json, rfc3339
from state.info import KeyInfo, LeaseInfo, ProcessInfo, RRsetInfo
from state.store import KeyRecord, RRsetRecord, StateStore

__all__ = [
    "ChainReport",
    "HistoryInfo",
    "KeyInfo",
    "KeyRecord",
    "LeaseInfo",
    "ProcessInfo",
    "RRsetInfo",
    "RRsetRecord",
    "StateStore",
    "canonical_json",
    "rfc3339",
]
