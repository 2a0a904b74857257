"""The parent registry of the lab: a CDS scanner (RFC 7344 sec. 4, RFC 8078).

Run detached by the lab as ``python -m orchestrator.lab.scanner LAB_DIR``; reads the lab
from ``LAB_DIR/lab.json`` and logs every DS change, with a timestamp, to
``LAB_DIR/scanner.log``. Each ``interval`` and for each child zone it:

1. asks every nameserver of every provider for the zone's CDS RRset (DO bit, no RD);
2. acts only if all answered and all CDS RRsets are identical and non-empty;
3. accepts them if the parent has no DS yet (bootstrap is out of scope here), or if at
   least one server's CDS RRset validates under that server's DNSKEY RRset, itself signed
   by a KSK matching a DS now at the parent (RFC 7344 sec. 4.1: the chain of trust);
4. sets the parent DS RRset to exactly the CDS records (``0 0 0 00``: removes the DS).

It never crashes on a bad answer: it logs the reason (once until it changes) and retries.
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from threading import Lock
from typing import Any

import dns.dnssec
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rrset

from orchestrator.lab import dnsq, powerdns, proc
from orchestrator.lab.zones import PARENT_ZONE

DEFAULT_INTERVAL = 0.5
_TIMEOUT = 0.5  # loopback answers take < 1 ms; a dead server must not stall a round


def _ds_text(rd: Any) -> str:
    """DS/CDS rdata in the one-token-digest form the PowerDNS API stores."""
    return f"{rd.key_tag} {rd.algorithm} {rd.digest_type} {rd.digest.hex()}"


def _is_delete(cds: dns.rrset.RRset) -> bool:
    """RFC 8078 sec. 4: a CDS RRset of the single record ``0 0 0 00`` asks for removal."""
    return len(cds) == 1 and all(rd.algorithm == 0 and rd.key_tag == 0 for rd in cds)


class CannotActError(Exception):
    """This zone cannot be acted on this round (the message says why)."""


class Scanner:
    def __init__(self, lab_dir: Path, state: dict[str, Any]) -> None:
        self.log_path = lab_dir / "scanner.log"
        self.zones: list[str] = list(state["zones"])
        self.servers = [(str(p["address"]), int(p["dns_port"])) for p in state["providers"]]
        parent = state["parent"]
        self.parent = (str(parent["address"]), int(parent["dns_port"]))
        self.api = powerdns.api_client(parent["api_url"], parent["api_key"])
        self.ds_ttl = int(state["ds_ttl"])
        self.interval = float(state.get("scanner_interval", DEFAULT_INTERVAL))
        # Exit when the parent server is gone: a scanner left over from a lab that was
        # killed without stop() must not poll forever.
        self.parent_proc = next(
            (proc.Proc.from_json(p) for p in state["processes"] if p["name"] == "parent"), None
        )
        self._last_note: dict[str, str] = {}
        self._lock = Lock()

    def log(self, message: str) -> None:
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        with self._lock, self.log_path.open("a") as f:
            f.write(f"{stamp} {message}\n")

    def note(self, zone: str, message: str) -> None:
        """Log why a zone was skipped, once until the reason changes (no log flood)."""
        if self._last_note.get(zone) != message:
            self._last_note[zone] = message
            self.log(f"{zone} {message}")

    def run(self) -> None:
        self.log(f"scanner started: {len(self.zones)} zones, interval {self.interval}s")
        with ThreadPoolExecutor(max(1, min(8, len(self.zones)))) as pool:
            while self._parent_alive():
                started = time.monotonic()
                list(pool.map(self.scan_safely, self.zones))
                time.sleep(max(0.0, self.interval - (time.monotonic() - started)))
        self.log("parent server gone: scanner exits")

    def _parent_alive(self) -> bool:
        if self.parent_proc is None:
            return True
        current = proc.start_time_of(self.parent_proc.pid)
        recorded = self.parent_proc.start_time
        return current is not None and (recorded is None or current == recorded)

    def scan_safely(self, zone: str) -> None:
        try:
            self.scan(zone)
            self._last_note.pop(zone, None)
        except CannotActError as exc:
            self.note(zone, f"skipped: {exc}")
        except Exception as exc:  # never let one bad answer stop the registry
            self.note(zone, f"error: {type(exc).__name__}: {exc}")

    def _ask(
        self, server: tuple[str, int], zone: str, rdtype: str, *, dnssec: bool = True
    ) -> dns.message.Message:
        try:
            resp = dnsq.query(server[0], server[1], zone, rdtype, _TIMEOUT, dnssec=dnssec)
        except (dns.exception.DNSException, OSError) as exc:
            raise CannotActError(
                f"{rdtype} query to {server[0]}:{server[1]} failed: {exc}"
            ) from exc
        if resp.rcode() != dns.rcode.NOERROR:
            raise CannotActError(
                f"{server[0]}:{server[1]} answered {dns.rcode.to_text(resp.rcode())}"
            )
        return resp

    def scan(self, zone: str) -> None:
        # Cheap path first (the registry polls every zone twice a second, without DO: no
        # signatures to parse): when the first server's CDS is absent or already what the
        # parent has, no answer from the other servers could lead to a change (all must
        # agree), so they are not asked.
        first = self.servers[0]
        first_cds = dnsq.answer(self._ask(first, zone, "CDS", dnssec=False), zone, "CDS")
        if not first_cds:
            return  # nothing published (or not everywhere): nothing to do
        current_set = self.parent_ds(zone)
        current = sorted(_ds_text(rd) for rd in current_set) if current_set else []
        delete = _is_delete(first_cds)
        if (delete and not current) or sorted(_ds_text(rd) for rd in first_cds) == current:
            return
        # A change is due: now ask every server, with signatures, for the real decision.
        answers = {s: self._ask(s, zone, "CDS") for s in self.servers}
        cds_sets = {s: dnsq.answer(r, zone, "CDS") for s, r in answers.items()}
        texts = {s: sorted(_ds_text(rd) for rd in (c or [])) for s, c in cds_sets.items()}
        if len({tuple(t) for t in texts.values()}) != 1 or not texts[first]:
            raise CannotActError(
                "CDS differs between servers: "
                + json.dumps({f"{a}:{p}": t for (a, p), t in texts.items()})
            )
        delete = _is_delete(next(c for c in cds_sets.values() if c))
        if current_set:
            why = self.validated_at(zone, answers, cds_sets, current_set)
        else:
            why = "parent has no DS (bootstrap accepted without checks)"
        new = [] if delete else texts[first]
        powerdns.set_rrset(self.api, PARENT_ZONE, zone, "DS", ttl=self.ds_ttl, contents=new)
        self.log(f"{zone} DS {current} -> {new} ({why})")

    def parent_ds(self, zone: str) -> dns.rrset.RRset | None:
        return dnsq.answer(self._ask(self.parent, zone, "DS", dnssec=False), zone, "DS")

    def validated_at(
        self,
        zone: str,
        answers: dict[tuple[str, int], dns.message.Message],
        cds_sets: dict[tuple[str, int], dns.rrset.RRset | None],
        parent_ds: dns.rrset.RRset,
    ) -> str:
        """Name of a server whose CDS validates through a DS at the parent; else CannotActError."""
        name = dns.name.from_text(zone)
        reasons = []
        for server, resp in answers.items():
            a, p = server
            try:
                cds, cds_sig = cds_sets[server], dnsq.answer(resp, zone, "RRSIG", covers="CDS")
                keys_resp = self._ask(server, zone, "DNSKEY")
                keys = dnsq.answer(keys_resp, zone, "DNSKEY")
                keys_sig = dnsq.answer(keys_resp, zone, "RRSIG", covers="DNSKEY")
                if not (cds and cds_sig and keys and keys_sig):
                    raise CannotActError("CDS or DNSKEY unsigned or missing")
                trusted = [k for k in keys if any(_matches(name, k, ds) for ds in parent_ds)]
                if not trusted:
                    raise CannotActError("no DNSKEY matches the parent DS")
                anchor = dns.rrset.from_rdata_list(name, keys.ttl, trusted)
                dns.dnssec.validate(keys, keys_sig, {name: anchor})
                dns.dnssec.validate(cds, cds_sig, {name: keys})
                return f"CDS validated at {a}:{p}"
            except (CannotActError, dns.exception.ValidationFailure) as exc:
                reasons.append(f"{a}:{p}: {exc}")
        raise CannotActError("CDS validates nowhere: " + "; ".join(reasons))


def _matches(name: dns.name.Name, key: Any, ds: Any) -> bool:
    try:
        return bool(dns.dnssec.make_ds(name, key, ds.digest_type) == ds)
    except (dns.exception.UnsupportedAlgorithm, ValueError):
        return False


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m orchestrator.lab.scanner LAB_DIR", file=sys.stderr)
        return 2
    lab_dir = Path(args[0])
    state = json.loads((lab_dir / "lab.json").read_text())
    Scanner(lab_dir, state).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
