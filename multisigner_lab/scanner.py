"""The parent registry of the lab: a CDS scanner (RFC 7344 sec. 4, RFC 8078) and a CSYNC
scanner (RFC 7477) for the NS RRset of each child.

Run detached by the lab as ``python -m multisigner_lab.scanner LAB_DIR``; reads the lab
from ``LAB_DIR/lab.json`` and logs every DS and NS change, with a timestamp, to
``LAB_DIR/scanner.log``. Each ``interval`` it reads the parent zone ``test.`` from the
parent's own database (one GET through the PowerDNS API: the registry's view of every
delegation — NS, DS and the address records of the host objects) and, for each child zone:

**Which servers.** Only the nameservers *currently delegated* to — the parent's own NS
RRset for the child, each NS name mapped to its address through the lab's provider table
— are asked. RFC 7344 sec. 4 and RFC 7477 sec. 4 both have the parent query "the child's
nameservers", i.e. those of the delegation. That is also what multi-signer needs: a
provider that serves the zone but is not (yet, or any more) delegated is invisible to
resolvers, so its CDS must neither block a DS change (a joining provider has nothing to
say before it is delegated; a leaving one may already be gone) nor make one.

**CDS** (unchanged rules, on the delegated servers):

1. ask every delegated server for the zone's CDS RRset (DO bit, no RD);
2. act only if all answered and all CDS RRsets are identical and non-empty;
3. accept them if the parent has no DS yet (bootstrap is out of scope here), or if at
   least one server's CDS RRset validates under that server's DNSKEY RRset, itself signed
   by a KSK matching a DS now at the parent (RFC 7344 sec. 4.1: the chain of trust);
4. set the parent DS RRset to exactly the CDS records (``0 0 0 00``: removes the DS).

**CSYNC** (RFC 7477; NS only — the lab's nameservers are all out of the child's
bailiwick, so there is no child glue to copy):

1. at every delegated server, in this order: SOA, CSYNC, NS and DNSKEY (all with DO),
   then SOA again — a changed serial means the zone changed under the scan: retry next
   round (RFC 7477 sec. 4.1);
2. every server must serve a CSYNC RRset, all identical, of exactly one record;
3. its type bitmap must include NS; types other than NS, A and AAAA are refused (the
   parent must process all of them or none, sec. 4.1; A/AAAA concern in-bailiwick glue,
   of which the lab has none);
4. the *immediate* flag must be set: without it RFC 7477 sec. 2.1.1.1 wants an
   out-of-band approval, which this registry has no way to receive;
5. with *soaminimum* set, every server's SOA serial must be >= the CSYNC serial (RFC 1982
   arithmetic). Per server, not per zone: multi-signer providers keep independent serials
   (PowerDNS' SOA-EDIT-API bumps its own on each change), which is also why a CSYNC that
   must be identical everywhere can only carry a serial <= every provider's (e.g. 0);
6. at every server, its DNSKEY RRset must be signed by a key matching a DS at the parent,
   and its SOA, CSYNC and NS RRsets must validate under that DNSKEY RRset (a delegation
   without DS is refused: CSYNC requires DNSSEC);
7. every server's NS RRset must be identical; each name in it must be a lab provider's
   nameserver (the registry must be able to query it later), must not lie inside the child
   (no glue processing), must have its address record in ``test.`` when it is under
   ``test.`` (the host object exists), and — if newly added — must answer the zone's SOA
   authoritatively (a lameness check, no DNSSEC check: a premature join should show up
   as bogus answers, not be hidden by the registry);
8. replace the parent's NS RRset for the child with it (TTL ``ns_ttl``).

Both scans use a cheap path first (only the first delegated server; a header-only
presence probe, then one full query): without a CDS/CSYNC there, or with one already in effect
at the parent, no answer from the others could lead to a change (all must agree), so they
are not asked. A round of 200 zones without CDS or CSYNC costs two such probes per zone
plus one parse of the parent zone: a few ms of CPU.

It never crashes on a bad answer: it logs the reason (once until it changes, separately
for CDS and CSYNC) and retries.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from threading import Lock
from typing import Any

import dns.dnssec
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.serial

from core.errors import ObservationError
from multisigner_lab import dnsq, powerdns, proc
from multisigner_lab.registry import (
    CSYNC_IMMEDIATE,
    CSYNC_SOAMINIMUM,
    CSYNC_TYPES,
    Addr,
    CannotActError,
    ChildData,
    Delegation,
    ParentZone,
    bitmap_types,
    ds_matches,
    ds_text,
    is_delete,
    norm_name,
    ns_names,
    parse_parent_zone,
    with_sig,
)
from multisigner_lab.zones import PARENT_ZONE

DEFAULT_INTERVAL = 0.5
_TIMEOUT = 0.5  # loopback answers take < 1 ms; a dead server must not stall a round

class Scanner:
    def __init__(self, lab_dir: Path, state: dict[str, Any]) -> None:
        self.log_path = lab_dir / "scanner.log"
        self.zones: list[str] = list(state["zones"])
        # The lab's host table: which address answers for which nameserver name.
        self.hosts: dict[str, Addr] = {
            norm_name(str(p["ns_name"])): (str(p["address"]), int(p["dns_port"]))
            for p in state["providers"]
        }
        parent = state["parent"]
        self.parent = (str(parent["address"]), int(parent["dns_port"]))
        self.api = powerdns.adapter(
            "parent", parent["api_url"], parent["api_key"], f"{self.parent[0]}:{self.parent[1]}"
        )
        self.ds_ttl = int(state["ds_ttl"])
        self.ns_ttl = int(state.get("ns_ttl", state["ttl"]))
        self.interval = float(state.get("scanner_interval", DEFAULT_INTERVAL))
        # Exit when the parent server is gone: a scanner left over from a lab that was
        # killed without stop() must not poll forever.
        self.parent_proc = next(
            (proc.Proc.from_json(p) for p in state["processes"] if p["name"] == "parent"), None
        )
        self._last_note: dict[tuple[str, str], str] = {}
        self._lock = Lock()

    def log(self, message: str) -> None:
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        with self._lock, self.log_path.open("a") as f:
            f.write(f"{stamp} {message}\n")

    def note(self, zone: str, message: str, kind: str = "CDS") -> None:
        """Log why a zone was skipped, once until the reason changes (no log flood);
        CDS and CSYNC reasons are tracked apart so they do not alternate."""
        if self._last_note.get((zone, kind)) != message:
            self._last_note[(zone, kind)] = message
            self.log(f"{zone} {message}")

    def run(self) -> None:
        self.log(f"scanner started: {len(self.zones)} zones, interval {self.interval}s")
        with ThreadPoolExecutor(max(1, min(8, len(self.zones)))) as pool:
            while self._parent_alive():
                started = time.monotonic()
                try:
                    parent = self.parent_zone()
                except Exception as exc:  # the parent is restarting, say: next round
                    self.note("*", f"error reading the parent zone: {exc}", "parent")
                else:
                    self._last_note.pop(("*", "parent"), None)
                    list(pool.map(self.scan_safely, self.zones, [parent] * len(self.zones)))
                time.sleep(max(0.0, self.interval - (time.monotonic() - started)))
        self.log("parent server gone: scanner exits")

    def _parent_alive(self) -> bool:
        if self.parent_proc is None:
            return True
        current = proc.start_time_of(self.parent_proc.pid)
        recorded = self.parent_proc.start_time
        return current is not None and (recorded is None or current == recorded)

    def parent_zone(self) -> ParentZone:
        """The registry's own data: one API read of ``test.`` per round for all zones."""
        data = powerdns.call(powerdns.read_zone(self.api, PARENT_ZONE))
        return parse_parent_zone(data, self.zones)

    def scan_safely(self, zone: str, parent: ParentZone) -> None:
        for kind, scan in (("CDS", self.scan_cds), ("CSYNC", self.scan_csync)):
            try:
                scan(zone, parent)
                self._last_note.pop((zone, kind), None)
            except CannotActError as exc:
                self.note(zone, f"{'' if kind == 'CDS' else 'CSYNC '}skipped: {exc}", kind)
            except Exception as exc:  # never let one bad answer stop the registry
                self.note(zone, f"{kind} error: {type(exc).__name__}: {exc}", kind)

    def _ask(self, server: Addr, zone: str, rdtype: str) -> dns.message.Message:
        try:
            resp = dnsq.query(server[0], server[1], zone, rdtype, _TIMEOUT)
        except (ObservationError, dns.exception.DNSException, OSError) as exc:
            raise CannotActError(
                f"{rdtype} query to {server[0]}:{server[1]} failed: {exc}"
            ) from exc
        if resp.rcode() != dns.rcode.NOERROR:
            raise CannotActError(
                f"{server[0]}:{server[1]} answered {dns.rcode.to_text(resp.rcode())}"
            )
        return resp

    def _present(self, server: Addr, zone: str, rdtype: str) -> bool:
        """Whether ``server`` has a ``zone`` ``rdtype`` RRset, from the reply header only
        (the cheap first look of every round; see :func:`dnsq.answer_count`)."""
        try:
            rcode, count = dnsq.answer_count(server[0], server[1], zone, rdtype, _TIMEOUT)
        except (dns.exception.DNSException, OSError) as exc:
            raise CannotActError(
                f"{rdtype} query to {server[0]}:{server[1]} failed: {exc}"
            ) from exc
        if rcode != dns.rcode.NOERROR:
            raise CannotActError(f"{server[0]}:{server[1]} answered {dns.rcode.to_text(rcode)}")
        return count > 0

    def delegated_servers(self, zone: str, parent: ParentZone) -> dict[str, Addr]:
        """NS name -> address of every nameserver the parent delegates ``zone`` to now."""
        delegation = parent.children.get(norm_name(zone))
        if delegation is None or not delegation.ns:
            raise CannotActError(f"the parent has no NS RRset for {zone}")
        unknown = [n for n in delegation.ns if n not in self.hosts]
        if unknown:
            raise CannotActError(f"delegated to {unknown}: no lab nameserver, cannot query")
        return {n: self.hosts[n] for n in delegation.ns}

    # ------------------------------------------------------------------------ CDS

    def scan_cds(self, zone: str, parent: ParentZone) -> None:
        servers = list(self.delegated_servers(zone, parent).values())
        current_set = parent.children[norm_name(zone)].ds
        # Cheap path first (the registry polls every zone twice a second: a header-only
        # probe, then one query of the first server): when the first server's CDS is
        # absent or already what the parent has, no answer from the other servers could
        # lead to a change (all must agree), so they are not asked.
        first = servers[0]
        if not self._present(first, zone, "CDS"):
            return  # nothing published (or not everywhere): nothing to do
        first_cds = dnsq.answer(self._ask(first, zone, "CDS"), zone, "CDS")
        if not first_cds:
            return  # nothing published (or not everywhere): nothing to do
        current = sorted(ds_text(rd) for rd in current_set)
        delete = is_delete(first_cds)
        if (delete and not current) or sorted(ds_text(rd) for rd in first_cds) == current:
            return
        # A change is due: now ask every server, with signatures, for the real decision.
        answers = {s: self._ask(s, zone, "CDS") for s in servers}
        cds_sets = {s: dnsq.answer(r, zone, "CDS") for s, r in answers.items()}
        texts = {s: sorted(ds_text(rd) for rd in (c or [])) for s, c in cds_sets.items()}
        if len({tuple(t) for t in texts.values()}) != 1 or not texts[first]:
            raise CannotActError(
                "CDS differs between servers: "
                + json.dumps({f"{a}:{p}": t for (a, p), t in texts.items()})
            )
        delete = is_delete(next(c for c in cds_sets.values() if c))
        if current_set:
            why = self.validated_at(zone, answers, cds_sets, current_set)
        else:
            why = "parent has no DS (bootstrap accepted without checks)"
        new = [] if delete else texts[first]
        powerdns.call(
            powerdns.patch_rrset(self.api, PARENT_ZONE, zone, "DS", ttl=self.ds_ttl, contents=new)
        )
        self.log(f"{zone} DS {current} -> {new} ({why})")

    def validated_at(
        self,
        zone: str,
        answers: dict[Addr, dns.message.Message],
        cds_sets: dict[Addr, dns.rrset.RRset | None],
        parent_ds: Sequence[Any],
    ) -> str:
        """Name of a server whose CDS validates through a DS at the parent; else CannotActError."""
        name = dns.name.from_text(zone)
        reasons = []
        for server, resp in answers.items():
            a, p = server
            try:
                cds, cds_sig = cds_sets[server], dnsq.answer(resp, zone, "RRSIG", covers="CDS")
                if not (cds and cds_sig):
                    raise CannotActError("CDS unsigned or missing")
                keys_resp = self._ask(server, zone, "DNSKEY")
                keys = self.chained_keys(zone, with_sig(keys_resp, zone, "DNSKEY"), parent_ds)
                dns.dnssec.validate(cds, cds_sig, {name: keys})
                return f"CDS validated at {a}:{p}"
            except (CannotActError, dns.exception.ValidationFailure) as exc:
                reasons.append(f"{a}:{p}: {exc}")
        raise CannotActError("CDS validates nowhere: " + "; ".join(reasons))

    @staticmethod
    def chained_keys(
        zone: str, keys_and_sig: tuple[Any, Any], parent_ds: Sequence[Any]
    ) -> dns.rrset.RRset:
        """A server's DNSKEY RRset if it is signed by a key matching a DS at the parent
        (RFC 7344 sec. 4.1, the chain of trust); else CannotActError/ValidationFailure."""
        name = dns.name.from_text(zone)
        keys, keys_sig = keys_and_sig
        if not (keys and keys_sig):
            raise CannotActError("DNSKEY unsigned or missing")
        trusted = [k for k in keys if any(ds_matches(name, k, ds) for ds in parent_ds)]
        if not trusted:
            raise CannotActError("no DNSKEY matches the parent DS")
        anchor = dns.rrset.from_rdata_list(name, keys.ttl, trusted)
        dns.dnssec.validate(keys, keys_sig, {name: anchor})
        result: dns.rrset.RRset = keys
        return result

    # ---------------------------------------------------------------------- CSYNC

    def scan_csync(self, zone: str, parent: ParentZone) -> None:
        servers = self.delegated_servers(zone, parent)
        delegation = parent.children[norm_name(zone)]
        first = next(iter(servers.values()))
        if not self._present(first, zone, "CSYNC"):
            return
        first_ns = dnsq.answer(self._ask(first, zone, "NS"), zone, "NS")
        if first_ns is not None and ns_names(first_ns) == delegation.ns:
            return  # already in effect (a change needs every server to agree with the first)
        seen = {ns: self.child_data(zone, ns, addr) for ns, addr in servers.items()}
        csync = self.agreed_csync(seen)
        types = bitmap_types(csync)
        if dns.rdatatype.NS not in types:
            raise CannotActError(f"CSYNC '{csync}' has no NS in its type bitmap")
        if extra := types - CSYNC_TYPES:
            raise CannotActError(
                f"CSYNC '{csync}' also asks for {sorted(dns.rdatatype.to_text(t) for t in extra)}"
                ": this registry processes NS (A, AAAA) only, and all or nothing"
            )
        if not csync.flags & CSYNC_IMMEDIATE:
            raise CannotActError(
                f"CSYNC '{csync}' lacks the immediate flag: that needs an out-of-band approval"
            )
        if csync.flags & CSYNC_SOAMINIMUM:
            for ns, data in seen.items():
                if dns.serial.Serial(data.serial) < dns.serial.Serial(csync.serial):
                    raise CannotActError(
                        f"SOA serial {data.serial} at {ns} is below the CSYNC serial"
                        f" {csync.serial} (soaminimum)"
                    )
        if not delegation.ds:
            raise CannotActError("the parent has no DS: CSYNC needs a validated chain")
        for ns, data in seen.items():
            self.validate_child_data(zone, ns, data, delegation.ds)
        ns_sets = {ns: ns_names(d.ns[0]) if d.ns[0] else () for ns, d in seen.items()}
        if len(set(ns_sets.values())) != 1:
            raise CannotActError(f"NS differs between servers: {json.dumps(ns_sets)}")
        new = next(iter(ns_sets.values()))
        if new == delegation.ns:
            return
        self.check_new_ns(zone, new, delegation, parent)
        powerdns.call(
            powerdns.patch_rrset(
                self.api, PARENT_ZONE, zone, "NS", ttl=self.ns_ttl, contents=list(new)
            )
        )
        self.log(
            f"{zone} NS {list(delegation.ns)} -> {list(new)} (CSYNC '{csync}' identical and"
            f" validated at {', '.join(servers)})"
        )

    def child_data(self, zone: str, ns: str, server: Addr) -> ChildData:
        """SOA, CSYNC, NS, DNSKEY with signatures, then SOA again (RFC 7477 sec. 4.1)."""
        soa = with_sig(self._ask(server, zone, "SOA"), zone, "SOA")
        csync = with_sig(self._ask(server, zone, "CSYNC"), zone, "CSYNC")
        ns_set = with_sig(self._ask(server, zone, "NS"), zone, "NS")
        keys = with_sig(self._ask(server, zone, "DNSKEY"), zone, "DNSKEY")
        again = dnsq.answer(self._ask(server, zone, "SOA"), zone, "SOA")
        if soa[0] is None or again is None:
            raise CannotActError(f"no SOA from {ns}")
        serial, serial_after = int(soa[0][0].serial), int(again[0].serial)
        if serial != serial_after:
            raise CannotActError(
                f"{ns} changed the zone during the scan ({serial} -> {serial_after}): next round"
            )
        if csync[0] is None:
            raise CannotActError(f"no CSYNC at {ns}")
        return ChildData(serial, soa, csync, ns_set, keys)

    @staticmethod
    def agreed_csync(seen: Mapping[str, ChildData]) -> Any:
        """The one CSYNC record every delegated server serves; else CannotActError."""
        sets = {ns: sorted(rd.to_text() for rd in (d.csync[0] or [])) for ns, d in seen.items()}
        if len({tuple(s) for s in sets.values()}) != 1:
            raise CannotActError(f"CSYNC differs between servers: {json.dumps(sets)}")
        rrset = next(iter(seen.values())).csync[0]
        if rrset is None or len(rrset) != 1:
            raise CannotActError(f"expected one CSYNC record, got {next(iter(sets.values()))}")
        return rrset[0]

    def validate_child_data(
        self, zone: str, ns: str, data: ChildData, parent_ds: Sequence[Any]
    ) -> None:
        name = dns.name.from_text(zone)
        try:
            keys = self.chained_keys(zone, data.keys, parent_ds)
            signed = (("SOA", data.soa), ("CSYNC", data.csync), ("NS", data.ns))
            for what, (rrset, sig) in signed:
                if not (rrset and sig):
                    raise CannotActError(f"{what} unsigned or missing")
                dns.dnssec.validate(rrset, sig, {name: keys})
        except (CannotActError, dns.exception.ValidationFailure) as exc:
            raise CannotActError(f"CSYNC data does not validate at {ns}: {exc}") from exc

    def check_new_ns(
        self, zone: str, new: Sequence[str], delegation: Delegation, parent: ParentZone
    ) -> None:
        """What a registry checks before it changes a delegation (see the module doc)."""
        if not new:
            raise CannotActError("the child serves an empty NS RRset")
        child = dns.name.from_text(zone)
        under_parent = dns.name.from_text(PARENT_ZONE)
        for ns in new:
            name = dns.name.from_text(ns)
            if name.is_subdomain(child):
                raise CannotActError(f"{ns} is inside {zone}: needs glue, not supported")
            if ns not in self.hosts:
                raise CannotActError(f"{ns} is no lab nameserver: the registry cannot query it")
            if name.is_subdomain(under_parent) and ns not in parent.hosts:
                raise CannotActError(f"{ns} has no address record in {PARENT_ZONE}")
            if ns not in delegation.ns:
                resp = self._ask(self.hosts[ns], zone, "SOA")
                if not (resp.flags & dns.flags.AA and dnsq.answer(resp, zone, "SOA")):
                    raise CannotActError(f"{ns} does not serve {zone} authoritatively")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m multisigner_lab.scanner LAB_DIR", file=sys.stderr)
        return 2
    lab_dir = Path(args[0])
    state = json.loads((lab_dir / "lab.json").read_text())
    Scanner(lab_dir, state).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
