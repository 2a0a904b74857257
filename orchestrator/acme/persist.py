"""``acme persist``: the dns-persist-01 record (draft-ietf-acme-dns-persist) at
``_validation-persist.FQDN`` at every signer, kept as a managed record in the state
database so ``verify`` notices a signer that lost it.

The record of one issuer and account replaces an earlier one of the same issuer and
account (its policy or persistUntil changed); other issuers' and accounts' records at
the name stay. A failing provider makes the command fail and every provider that was
changed gets its previous RRset back (under the same zone lease: nobody wrote since).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import dns.name

from core.config import ZoneConfig
from orchestrator.acme.dns01 import PublishFailed
from orchestrator.acme.propagation import addresses, observe, wait_for
from orchestrator.acme.resolve import locate
from orchestrator.acme.rrsets import Change, change_txt, check_writable, zone_lease
from orchestrator.decide.acme import (
    PERSIST_LABEL,
    PersistRecord,
    check_account_uri,
    check_issuer,
    persist_until,
    replaces,
    txt_record,
    txt_text,
)
from orchestrator.decide.invariant import Finding
from orchestrator.runtime import Reporter, Runtime

PURPOSE = "dns-persist-01"


async def persist(rt: Runtime, fqdn: str, *, issuer: str, account_uri: str, wildcard: bool,
                  until: str | None, remove: bool, wait: bool, timeout: float | None,
                  ttl: int, report: Reporter, resolver: str | None = None) -> dict[str, Any]:
    """Write (or with ``remove``, delete) the record; the result as JSON data."""
    if fqdn.strip().startswith("*."):
        wildcard = True  # a wildcard name is validated at its base name, policy=wildcard
    record = PersistRecord(
        check_issuer(issuer), check_account_uri(account_uri), wildcard,
        persist_until(until, datetime.now(UTC)) if until else None)
    target = await locate(rt, fqdn, PERSIST_LABEL, resolver=resolver)
    zone, owner = target.zone, target.name.to_text()
    signers = check_writable(rt, zone)
    key = f"{record.issuer} {record.account_uri}"

    def edit(records: list[str]) -> list[str] | None:
        kept = [r for r in records if not replaces(txt_text(r), record)]
        new = kept if remove else sorted([*kept, txt_record(record.value)])
        return None if sorted(new) == sorted(records) else new

    action = "persist-remove" if remove else "persist"
    async with zone_lease(rt, zone.name):
        change = await change_txt(rt, zone, target.name, edit, ttl, signers)
        result = {"zone": zone.name, "name": owner, "action": action,
                  "chain": [n.to_text() for n in target.chain], "values": [record.value],
                  "providers": change.changed + change.unchanged, "changed": change.changed,
                  "write_seconds": change.seconds, "propagation_seconds": None,
                  "nameserver_addresses": 0}
        if not change.ok:
            undo = await _restore(rt, zone, target.name, change)
            _history(rt, zone, "persist-failed", result, change, undo)
            raise PublishFailed(
                f"{action} at {owner} failed at " + "; ".join(change.failed.values())
                + (f"; restoring failed at {', '.join(undo.failed)}" if undo.failed else
                   "; the providers changed got their previous RRset back"))
        if remove:
            rt.store.remove_managed_record(zone.name, owner, "TXT", key)
        else:
            rt.store.set_managed_record(zone.name, owner, "TXT", key, value=record.value,
                                        purpose=PURPOSE, actor=rt.actor)
        _history(rt, zone, "persist-removed" if remove else "persisted", result, change, None)
    if wait:
        limit = timeout if timeout is not None else zone.policy.propagation_timeout.total_seconds()
        seconds, count = await wait_for(rt, zone, target.name, [record.value],
                                        present=not remove, timeout=limit, report=report)
        result["propagation_seconds"], result["nameserver_addresses"] = seconds, count
    return result


async def _restore(rt: Runtime, zone: ZoneConfig, name: dns.name.Name, change: Change) -> Change:
    out = Change()
    for provider, records in change.before.items():

        def back(_current: list[str], old: list[str] = records) -> list[str]:
            return old

        sub = await change_txt(rt, zone, name, back, 60, [provider])
        out.failed.update(sub.failed)
    return out


def _history(rt: Runtime, zone: ZoneConfig, state: str, result: dict[str, Any],
             change: Change, undo: Change | None) -> None:
    rt.store.append_history(
        zone.name, process_id=None, kind="acme", from_state=None, to_state=state,
        actor=rt.actor, reason=f"{result['action']} {result['values'][0]} at {result['name']}",
        evidence={**result, "failed": change.failed,
                  "undo_failed": undo.failed if undo else {}})


async def managed_findings(rt: Runtime, zone: ZoneConfig) -> list[Finding]:
    """MANAGED_RECORD_MISSING for every nameserver address of a signer that does not
    serve a record ``acme persist`` wrote (a server that does not answer is reported by
    the invariant already)."""
    records = rt.store.managed_records(zone.name)
    if not records:
        return []
    apex = dns.name.from_text(zone.name)
    where = await addresses(rt, zone)
    findings: list[Finding] = []
    for name in sorted({r.name for r in records}):
        owner = dns.name.from_text(name)
        for address in where:
            served = await observe(address, apex, owner)
            if served.error:
                continue
            have = {b"".join(rd.strings).decode("utf-8", "replace") for rd in served.txt or []}
            findings += [Finding(
                "breach", "MANAGED_RECORD_MISSING",
                f"{address.provider} ({address.address}) does not serve the {r.purpose} "
                f"record {r.value!r} at {name} (written by {r.actor} at "
                f"{r.updated_at.isoformat()}); run 'multisigner acme persist' again",
                provider=address.provider, server=address.address, record=r.value)
                for r in records if r.name == name and r.value not in have]
    return findings
